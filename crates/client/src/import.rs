//! Importing a GSO file: the units are streamed to `ImportUnits` in chunks, then the
//! mapping (conversion table only) goes to `ReorganizeUnits`. The request ids derive
//! from the file's content, so importing the same file again is answered as before
//! and writes nothing.
//!
//! Before the mapping is sent, the table is reconciled with the pre-2025 list as the
//! registration service holds it (`dvk_domain::reconcile`): the links inferred for
//! recoded units go with the table's own, and the outcome says which units of either
//! list have no counterpart, and why.

use dvk_codec::convert;
use dvk_domain::reconcile::{ListedCommune, Reconciliation};
use dvk_domain::{Level, Tree, UnitCode};
use dvk_proto::registration::v1::{
    ImportUnitsRequest, ImportUnitsResponse, ListUnitsRequest, ReorganizeUnitsRequest, ReorganizeUnitsResponse,
    registration_service_client::RegistrationServiceClient,
};
use sha2::Digest;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use dvk_gso::GsoFile;

/// Units per streamed message.
pub const CHUNK: usize = 500;

#[derive(Debug)]
pub struct ImportOutcome {
    pub units: ImportUnitsResponse,
    pub links: Option<ReorganizeUnitsResponse>,
    /// The conversion table reconciled with the pre-2025 list (None for the list
    /// itself, or when the registration service holds no pre-2025 commune yet).
    pub reconciliation: Option<Reconciliation>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The server refused a record; the line is the file's.
    #[error("line {line}: {message}")]
    Row { line: u64, message: String },
    #[error("{0}")]
    Status(#[from] tonic::Status),
    #[error("the file holds no units")]
    Empty,
}

/// Adds `authorization: Bearer <token>` to a request.
pub fn authorized<T>(message: T, token: &str) -> Result<tonic::Request<T>, tonic::Status> {
    let mut r = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| tonic::Status::invalid_argument("the token holds characters a header cannot carry"))?;
    r.metadata_mut().insert("authorization", value);
    Ok(r)
}

/// A request id derived from what is sent, so a re-import repeats the first request.
pub fn content_id(prefix: &str, parts: &[&[u8]]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

/// Turns a refusal naming `units[i]` into one naming the file's line.
fn locate(file: &GsoFile, status: tonic::Status) -> ImportError {
    if status.code() == tonic::Code::InvalidArgument
        && let Some(br) = status.get_details_bad_request()
        && let Some(v) = br.field_violations.first()
        && let Some(index) =
            v.field.strip_prefix("units[").and_then(|r| r.split(']').next()).and_then(|i| i.parse().ok())
        && let Some(line) = file.unit_line(index)
    {
        return ImportError::Row { line, message: format!("{}: {}", v.field, v.description) };
    }
    ImportError::Status(status)
}

fn encode(m: &impl prost::Message) -> Vec<u8> {
    m.encode_to_vec()
}

/// Imports `file`; `progress` is called with the number of units sent so far.
pub async fn import(
    client: &mut RegistrationServiceClient<Channel>,
    token: &str,
    file: &GsoFile,
    origin: &str,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<ImportOutcome, ImportError> {
    let tree = file.tree.ok_or(ImportError::Empty)?;
    if file.units.is_empty() {
        return Err(ImportError::Empty);
    }
    let records: Vec<_> = file.units.iter().map(|(_, u)| u.clone()).collect();
    let encoded: Vec<Vec<u8>> = records.iter().map(encode).collect();
    let parts: Vec<&[u8]> = std::iter::once(tree.name().as_bytes()).chain(encoded.iter().map(Vec::as_slice)).collect();
    let request_id = content_id("import", &parts);
    let tree_wire = convert::tree_out(tree) as i32;
    let origin = origin.to_owned();
    let chunks: Vec<ImportUnitsRequest> = records
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, c)| ImportUnitsRequest {
            request_id: if i == 0 { request_id.clone() } else { String::new() },
            tree: tree_wire,
            origin: if i == 0 { origin.clone() } else { String::new() },
            units: c.to_vec(),
        })
        .collect();
    let mut sent = 0u64;
    let stream = tokio_stream::iter(chunks.into_iter().inspect(move |c| {
        sent += c.units.len() as u64;
        progress(sent);
    }));
    let units = client.import_units(authorized(stream, token)?).await.map_err(|s| locate(file, s))?.into_inner();
    let mut reconciliation = None;
    let links = if file.links.is_empty() {
        None
    } else {
        let mut links: Vec<_> = file.links.iter().map(|(_, l)| l.clone()).collect();
        let listed = listed_communes(client, token).await?;
        if !listed.is_empty() {
            let r = dvk_domain::reconcile::reconcile(&listed, &file.rows);
            links.extend(r.inferred.iter().map(|l| convert::reorg_link_out(l, 0)));
            reconciliation = Some(r);
        }
        let req = mapping_request("reorganize", links, &origin);
        match client.reorganize_units(authorized(req, token)?).await {
            Ok(r) => Some(r.into_inner()),
            Err(s) => {
                if s.code() == tonic::Code::InvalidArgument
                    && let Some(br) = s.get_details_bad_request()
                    && let Some(v) = br.field_violations.first()
                    && let Some(i) = v
                        .field
                        .strip_prefix("links[")
                        .and_then(|r| r.split(']').next())
                        .and_then(|i| i.parse::<usize>().ok())
                    && let Some((line, _)) = file.links.get(i)
                {
                    return Err(ImportError::Row { line: *line, message: format!("{}: {}", v.field, v.description) });
                }
                return Err(s.into());
            }
        }
    };
    Ok(ImportOutcome { units, links, reconciliation })
}

/// The 2025 mapping's links as one request, its id derived from them (`prefix-…`), so
/// that sending the same links again repeats the first request.
fn mapping_request(prefix: &str, links: Vec<dvk_proto::events::v1::ReorgLink>, origin: &str) -> ReorganizeUnitsRequest {
    let encoded: Vec<Vec<u8>> = links.iter().map(encode).collect();
    let parts: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    ReorganizeUnitsRequest {
        request_id: content_id(prefix, &parts),
        from_tree: convert::tree_out(Tree::Pre2025) as i32,
        to_tree: convert::tree_out(Tree::Y2025) as i32,
        effective_date: Some(convert::date_out(dvk_domain::date::REORGANISATION_2025)),
        links,
        origin: origin.to_owned(),
    }
}

/// Sends supplementary links (an operator's additions to the mapping).
pub async fn add_links(
    client: &mut RegistrationServiceClient<Channel>,
    token: &str,
    links: Vec<dvk_proto::events::v1::ReorgLink>,
    origin: &str,
) -> Result<ReorganizeUnitsResponse, ImportError> {
    let req = mapping_request("supplement", links, origin);
    Ok(client.reorganize_units(authorized(req, token)?).await?.into_inner())
}

/// The communes of the pre-2025 tree as the registration service holds them.
pub async fn listed_communes(
    client: &mut RegistrationServiceClient<Channel>,
    token: &str,
) -> Result<Vec<ListedCommune>, ImportError> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = ListUnitsRequest {
            tree: convert::tree_out(Tree::Pre2025) as i32,
            parent: None,
            level: convert::level_out(Level::Commune) as i32,
            page_size: 1000,
            page_token,
        };
        let page = client.list_units(authorized(req, token)?).await?.into_inner();
        for u in page.units {
            let Some(r) = u.record else { continue };
            let (Some(code), Some(parent)) = (r.code, r.parent) else { continue };
            let (Ok(code), Ok(district)) =
                (UnitCode::parse("code", &code.code), UnitCode::parse("parent", &parent.code))
            else {
                continue;
            };
            out.push(ListedCommune { code, name: r.name, district });
        }
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        page_token = page.next_page_token;
    }
}
