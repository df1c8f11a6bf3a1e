//! The registration service over gRPC on a real port with a real sled directory:
//! the real GSO lists, a model's whole life, retries, conflicts, invalid input,
//! permissions and restarts.

use dvk_client::import;
use dvk_gso as gso;
use dvk_proto::common::v1::{Date, Field, Level, Money, Tree, UnitCode};
use dvk_proto::events::v1::{
    AwardForm, Decision, ModelDetails, Resources, RunnerKind, Sponsor, Timeline, envelope::Payload,
};
use dvk_proto::registration::v1::{self as pr, registration_service_client::RegistrationServiceClient};
use dvk_tests::{Service, admin_units, token};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

type Client = RegistrationServiceClient<Channel>;

fn unit(code: &str) -> Option<UnitCode> {
    Some(UnitCode { code: code.into() })
}

fn date(y: i32, m: i32, d: i32) -> Option<Date> {
    Some(Date { year: y, month: m, day: d })
}

fn req<T>(message: T, token: &str) -> tonic::Request<T> {
    import::authorized(message, token).unwrap()
}

async fn import_file(client: &mut Client, name: &str) -> import::ImportOutcome {
    let file = gso::read(std::fs::File::open(admin_units(name)).unwrap()).unwrap();
    import::import(client, &token("admin", ""), &file, name, |_| {}).await.unwrap()
}

async fn count(client: &mut Client, tree: Tree, level: Level) -> u32 {
    let r = client
        .list_units(req(
            pr::ListUnitsRequest { tree: tree as i32, level: level as i32, page_size: 1, ..Default::default() },
            &token("analyst", ""),
        ))
        .await
        .unwrap()
        .into_inner();
    r.total_size
}

/// A service with both real trees and the mapping loaded.
async fn loaded(dir: &std::path::Path) -> (Service, Client) {
    let service = Service::registration(dir).await;
    let mut client = service.client().await;
    import_file(&mut client, "gso-communes-2025-01-04.csv").await;
    import_file(&mut client, "gso-reorganization-2025-07-01.csv").await;
    (service, client)
}

fn details(name: &str) -> ModelDetails {
    ModelDetails {
        name: name.into(),
        field: Field::Economy as i32,
        runner_kind: RunnerKind::Collective as i32,
        runner_name: "Chi hội Phụ nữ tổ dân phố 3".into(),
        sponsor: Sponsor::WomensUnion as i32,
        sponsor_name: "Hội LHPN phường Phúc Xá".into(),
        objectives: "Bê tông hoá 2 km đường ngõ xóm".into(),
        resources: Some(Resources { funds: Some(Money { vnd: 1_200_000_000 }), workdays: 850 }),
        timeline: Some(Timeline { start: date(2024, 3, 1), end: date(2024, 12, 31) }),
        ..Default::default()
    }
}

fn register(request_id: &str, unit_code: &str) -> pr::RegisterModelRequest {
    pr::RegisterModelRequest {
        request_id: request_id.into(),
        unit: unit(unit_code),
        registered_on: date(2024, 2, 15),
        details: Some(details("Dân vận khéo: đường làng sáng, xanh, sạch")),
    }
}

fn violations(s: &Status) -> Vec<String> {
    s.get_details_bad_request().map(|b| b.field_violations.into_iter().map(|v| v.field).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_gso_lists_import_with_the_published_counts_and_again_as_a_noop() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::registration(&dir.path().join("registration")).await;
    let mut client = service.client().await;

    let pre = import_file(&mut client, "gso-communes-2025-01-04.csv").await;
    assert_eq!(pre.units.units_added, 63 + 696 + 10_051);
    assert_eq!(count(&mut client, Tree::Pre2025, Level::Province).await, 63);
    assert_eq!(count(&mut client, Tree::Pre2025, Level::District).await, 696);
    assert_eq!(count(&mut client, Tree::Pre2025, Level::Commune).await, 10_051);
    // An island district without communes (Bạch Long Vĩ, Hải Phòng).
    let island = client
        .get_unit(req(pr::GetUnitRequest { tree: Tree::Pre2025 as i32, code: unit("318") }, &token("analyst", "")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(island.child_count, 0);
    assert_eq!(island.record.unwrap().name, "Huyện Bạch Long Vĩ");
    // Names are stored with single spaces, though the list has "Xã Cò  Nòi" (04138) and
    // "Xã  Hoàng Văn Thụ" (06178).
    let reader = client.clone();
    let name = |tree: Tree, code: &'static str| {
        let mut client = reader.clone();
        async move {
            let u = client
                .get_unit(req(pr::GetUnitRequest { tree: tree as i32, code: unit(code) }, &token("analyst", "")))
                .await
                .unwrap()
                .into_inner();
            u.record.unwrap().name
        }
    };
    assert_eq!(name(Tree::Pre2025, "04138").await, "Xã Cò Nòi");
    assert_eq!(name(Tree::Pre2025, "06178").await, "Xã Hoàng Văn Thụ");

    let new = import_file(&mut client, "gso-reorganization-2025-07-01.csv").await;
    assert_eq!(new.units.units_added, 34 + 3_321);
    assert_eq!(count(&mut client, Tree::Tree2025, Level::Province).await, 34);
    assert_eq!(count(&mut client, Tree::Tree2025, Level::Commune).await, 3_321);
    let no_districts = client
        .list_units(req(
            pr::ListUnitsRequest { tree: Tree::Tree2025 as i32, level: Level::District as i32, ..Default::default() },
            &token("analyst", ""),
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&no_districts), ["level"], "no districts since 2025");
    let links = new.links.unwrap();
    assert!(links.links_added > 10_000, "{links:?}");
    // "Xã  Hòa Khánh" and "Phường Kinh Môn      " in the 2025 list.
    assert_eq!(name(Tree::Tree2025, "27979").await, "Xã Hòa Khánh");
    assert_eq!(name(Tree::Tree2025, "10675").await, "Phường Kinh Môn");

    // The mapping: Phường Trúc Bạch (00004) went wholly into Phường Ba Đình (00004).
    let old = client
        .get_unit(req(pr::GetUnitRequest { tree: Tree::Pre2025 as i32, code: unit("00004") }, &token("analyst", "")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(old.successors.len(), 1);
    assert_eq!(old.successors[0].new_code.as_ref().unwrap().code, "00004");
    let ba_dinh = client
        .get_unit(req(pr::GetUnitRequest { tree: Tree::Tree2025 as i32, code: unit("00004") }, &token("analyst", "")))
        .await
        .unwrap()
        .into_inner();
    assert!(ba_dinh.predecessors.len() >= 4, "{:?}", ba_dinh.predecessors);

    // Importing the same files again writes nothing.
    let head = service_head(&service).await;
    let again = import_file(&mut client, "gso-communes-2025-01-04.csv").await;
    assert_eq!((again.units.units_added, again.units.units_received), (0, 63 + 696 + 10_051));
    let again = import_file(&mut client, "gso-reorganization-2025-07-01.csv").await;
    assert_eq!(again.links.unwrap().links_added, 0);
    assert_eq!(service_head(&service).await, head);

    // Paging through the provinces visits each once, in code order.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = client
            .list_units(req(
                pr::ListUnitsRequest {
                    tree: Tree::Pre2025 as i32,
                    page_size: 10,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                &token("analyst", ""),
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(r.units.into_iter().map(|u| u.record.unwrap().code.unwrap().code));
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    assert_eq!(seen.len(), 63);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_models_names_are_stored_with_single_spaces_and_its_descriptions_keep_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registration");
    let service = Service::registration(&data).await;
    let mut client = service.client().await;
    import_file(&mut client, "gso-communes-2025-01-04.csv").await;
    let mut request = register("spaced", "00001");
    let d = request.details.as_mut().unwrap();
    d.name = "Mô hình  \"Dân vận khéo\"\n  giữ gìn   vệ sinh".into();
    d.runner_name = "Chi hội\tPhụ nữ  tổ 3".into();
    d.objectives = "1. Thu gom rác\n2.  Trồng cây".into();
    let written = client.register_model(req(request, &token("reporter", "00001"))).await.unwrap().into_inner();
    let get = |mut client: Client| {
        let id = written.model_id.clone();
        async move {
            let m = client
                .get_model(req(pr::GetModelRequest { model_id: id }, &token("analyst", "")))
                .await
                .unwrap()
                .into_inner();
            m.details.unwrap()
        }
    };
    let stored = get(client.clone()).await;
    assert_eq!(stored.name, "Mô hình \"Dân vận khéo\" giữ gìn vệ sinh");
    assert_eq!(stored.runner_name, "Chi hội Phụ nữ tổ 3");
    assert_eq!(stored.objectives, "1. Thu gom rác\n2.  Trồng cây");
    // A restart replays the log to the same names.
    drop(client);
    service.stop().await;
    let service = Service::registration(&data).await;
    assert_eq!(get(service.client().await).await, stored);
    service.stop().await;
}

/// The log head, read through a model-free request: the position an import returns.
async fn service_head(service: &Service) -> u64 {
    let mut client = service.client().await;
    let file = gso::read(std::fs::File::open(admin_units("gso-communes-2025-01-04.csv")).unwrap()).unwrap();
    import::import(&mut client, &token("admin", ""), &file, "x", |_| {}).await.unwrap().units.position.unwrap().position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_import_names_its_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::registration(&dir.path().join("registration")).await;
    let mut client = service.client().await;
    // The parser stops at the bad row, with its line.
    let csv = "Tỉnh Thành Phố,Mã TP,Quận Huyện,Mã QH,Phường Xã,Mã PX,Cấp,Tên Tiếng Anh\n\
               Thành phố Hà Nội,01,Quận Ba Đình,001,Phường Phúc Xá,00001,Phường,\n\
               Thành phố Hà Nội,01,Quận Ba Đình,001,Chợ Lạ,00002,Phường,\n";
    let err = gso::read(csv.as_bytes()).unwrap_err();
    assert!(err.to_string().starts_with("line 3:"), "{err}");
    // A unit the server refuses (its parent is missing) is reported with its line too.
    let csv = "Tỉnh Thành Phố,Mã TP,Quận Huyện,Mã QH,Phường Xã,Mã PX,Cấp,Tên Tiếng Anh\n\
               Thành phố Hà Nội,01,Quận Ba Đình,001,Phường Phúc Xá,00001,Phường,\n";
    let mut file = gso::read(csv.as_bytes()).unwrap();
    file.units.remove(1); // drop the district: the commune's parent is unknown
    match import::import(&mut client, &token("admin", ""), &file, "t", |_| {}).await {
        Err(import::ImportError::Row { line: 2, message }) => assert!(message.contains("parent"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(count(&mut client, Tree::Pre2025, Level::Province).await, 0, "nothing of the import was written");
    // Only an admin imports.
    let mut file = gso::read(csv.as_bytes()).unwrap();
    file.units.truncate(1);
    match import::import(&mut client, &token("reporter", "01"), &file, "t", |_| {}).await {
        Err(import::ImportError::Status(s)) => assert_eq!(s.code(), Code::PermissionDenied),
        other => panic!("{other:?}"),
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_lives_its_whole_life_with_retries_conflicts_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registration");
    let (service, mut client) = loaded(&data).await;
    let reporter = token("reporter", "00001"); // Phường Phúc Xá, Ba Đình, Hà Nội
    let district_approver = token("approver", "001");
    let province_approver = token("approver", "01");

    // Register; a retry with the same request id gets the same answer and writes nothing.
    let first = client.register_model(req(register("reg-1", "00001"), &reporter)).await.unwrap().into_inner();
    assert_eq!(first.version, 1);
    let retry = client.register_model(req(register("reg-1", "00001"), &reporter)).await.unwrap().into_inner();
    assert_eq!(retry, first);
    let all =
        client.list_models(req(pr::ListModelsRequest::default(), &token("analyst", ""))).await.unwrap().into_inner();
    assert_eq!(all.total_size, 1, "the retry registered nothing");
    // The same id with another body is refused.
    let mut other = register("reg-1", "00001");
    other.details.as_mut().unwrap().name = "Khác".into();
    assert_eq!(client.register_model(req(other, &reporter)).await.unwrap_err().code(), Code::AlreadyExists);

    let id = first.model_id.clone();
    let start = pr::StartModelRequest {
        request_id: "start-1".into(),
        model_id: id.clone(),
        expected_version: 1,
        started_on: date(2024, 3, 1),
    };
    let v2 = client.start_model(req(start.clone(), &reporter)).await.unwrap().into_inner();
    assert_eq!(v2.version, 2);
    assert!(v2.position.as_ref().unwrap().position > first.position.as_ref().unwrap().position);
    // A retry of the start after it succeeded still gets its answer (not "already started").
    assert_eq!(client.start_model(req(start, &reporter)).await.unwrap().into_inner(), v2);
    // A stale version is ABORTED.
    let stale = pr::AmendModelRequest {
        request_id: "amend-stale".into(),
        model_id: id.clone(),
        expected_version: 1,
        details: Some(details("Tên mới")),
        reason: "đổi tên".into(),
    };
    assert_eq!(client.amend_model(req(stale, &reporter)).await.unwrap_err().code(), Code::Aborted);

    let decision = |n: &str, y, m, d| Some(Decision { number: n.into(), date: date(y, m, d), issuer: "UBND".into() });
    let recognize = |rid: &str, version, level: Level, by: &str| pr::RecognizeModelRequest {
        request_id: rid.into(),
        model_id: id.clone(),
        expected_version: version,
        level: level as i32,
        recognizing_unit: unit(by),
        decision: decision("12/QĐ-UBND", 2024, 6, 1),
        exemplary: level == Level::Province,
    };
    // A reporter cannot recognise; an approver of another district cannot either.
    assert_eq!(
        client.recognize_model(req(recognize("rec-x", 2, Level::District, "001"), &reporter)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        client
            .recognize_model(req(recognize("rec-y", 2, Level::District, "002"), &token("approver", "002")))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let v3 = client
        .recognize_model(req(recognize("rec-1", 2, Level::District, "001"), &district_approver))
        .await
        .unwrap()
        .into_inner();
    let v4 = client
        .recognize_model(req(recognize("rec-2", 3, Level::Province, "01"), &province_approver))
        .await
        .unwrap()
        .into_inner();
    let commend = pr::CommendModelRequest {
        request_id: "com-1".into(),
        model_id: id.clone(),
        expected_version: v4.version,
        form: AwardForm::DiplomaOfMerit as i32,
        level: Level::Province as i32,
        awarding_unit: unit("01"),
        decision: decision("45/QĐ-UBND", 2024, 8, 1),
    };
    let v5 = client.commend_model(req(commend, &province_approver)).await.unwrap().into_inner();
    let replicate = pr::ReplicateModelRequest {
        request_id: "rep-1".into(),
        model_id: id.clone(),
        expected_version: v5.version,
        target_unit: unit("00037"),
        replicated_on: date(2024, 9, 1),
        note: "Nhân rộng sang phường bạn".into(),
    };
    let v6 = client.replicate_model(req(replicate, &reporter)).await.unwrap().into_inner();
    let retire = pr::RetireModelRequest {
        request_id: "ret-1".into(),
        model_id: id.clone(),
        expected_version: v6.version,
        reason: "Hoàn thành mục tiêu".into(),
        retired_on: date(2024, 12, 31),
    };
    let v7 = client.retire_model(req(retire, &reporter)).await.unwrap().into_inner();
    assert_eq!((v3.version, v7.version), (3, 7));

    let model =
        client.get_model(req(pr::GetModelRequest { model_id: id.clone() }, &reporter)).await.unwrap().into_inner();
    assert_eq!(model.status, pr::ModelStatus::Retired as i32);
    assert_eq!(model.recognized_level, Level::Province as i32);
    assert!(model.exemplary);
    assert_eq!((model.commendations.len(), model.replications.len(), model.version), (1, 1, 7));

    let history = client
        .get_model_history(req(pr::GetModelHistoryRequest { model_id: id.clone(), ..Default::default() }, &reporter))
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<&str> = history.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "dvk.events.v1.ModelRegistered",
            "dvk.events.v1.ModelStarted",
            "dvk.events.v1.ModelRecognized",
            "dvk.events.v1.ModelRecognized",
            "dvk.events.v1.ModelCommended",
            "dvk.events.v1.ModelReplicated",
            "dvk.events.v1.ModelRetired",
        ]
    );
    let actors: Vec<&str> = history.events.iter().map(|e| e.actor.as_ref().unwrap().subject.as_str()).collect();
    assert_eq!(actors[0], "test-reporter-00001");
    assert_eq!(actors[2], "test-approver-001");
    assert!(matches!(history.events[0].payload, Some(Payload::ModelRegistered(_))));

    // Every answer is the same after a restart (the read models are rebuilt by replay).
    let list = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.list_models(req(pr::ListModelsRequest::default(), &token("analyst", ""))).await.unwrap().into_inner()
        }
    };
    let before = (
        model.clone(),
        history.clone(),
        list(&mut client).await,
        count(&mut client, Tree::Pre2025, Level::Commune).await,
    );
    service.stop().await;
    let service = Service::registration(&data).await;
    let mut client = service.client().await;
    let model_after =
        client.get_model(req(pr::GetModelRequest { model_id: id.clone() }, &reporter)).await.unwrap().into_inner();
    let history_after = client
        .get_model_history(req(pr::GetModelHistoryRequest { model_id: id.clone(), ..Default::default() }, &reporter))
        .await
        .unwrap()
        .into_inner();
    let after =
        (model_after, history_after, list(&mut client).await, count(&mut client, Tree::Pre2025, Level::Commune).await);
    assert_eq!(before, after);
    // And a retry after the restart still gets the first answer.
    assert_eq!(client.register_model(req(register("reg-1", "00001"), &reporter)).await.unwrap().into_inner(), first);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_names_the_field_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (service, mut client) = loaded(&dir.path().join("registration")).await;
    let reporter = token("reporter", "01");
    let cases: Vec<(&str, pr::RegisterModelRequest)> = vec![
        ("unit", register("bad-1", "99999")),
        ("unit", register("bad-2", "1234")),
        ("details.field", {
            let mut r = register("bad-3", "00001");
            r.details.as_mut().unwrap().field = 0;
            r
        }),
        ("details.name", {
            let mut r = register("bad-4", "00001");
            r.details.as_mut().unwrap().name = "   ".into();
            r
        }),
        ("details.objectives", {
            let mut r = register("bad-5", "00001");
            r.details.as_mut().unwrap().objectives = "x".repeat(5001);
            r
        }),
        ("details.resources.funds.vnd", {
            let mut r = register("bad-6", "00001");
            r.details.as_mut().unwrap().resources.as_mut().unwrap().funds = Some(Money { vnd: -1 });
            r
        }),
        ("registered_on", {
            let mut r = register("bad-7", "00001");
            r.registered_on = date(2024, 2, 30);
            r
        }),
        ("request_id", register("", "00001")),
    ];
    for (field, request) in cases {
        let err = client.register_model(req(request, &reporter)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(violations(&err).iter().any(|f| f == field), "{field}: {:?} in {err:?}", violations(&err));
    }
    // An unknown period in a query is refused the same way.
    let err = client
        .list_models(req(
            pr::ListModelsRequest {
                period: Some(dvk_proto::common::v1::Period { code: "2024-Q3".into() }),
                ..Default::default()
            },
            &reporter,
        ))
        .await
        .unwrap_err();
    assert_eq!((err.code(), violations(&err)), (Code::InvalidArgument, vec!["period".to_owned()]));
    let all =
        client.list_models(req(pr::ListModelsRequest::default(), &token("analyst", ""))).await.unwrap().into_inner();
    assert_eq!(all.total_size, 0, "nothing was written");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_authenticated_and_kept_to_their_subtree() {
    let dir = tempfile::tempdir().unwrap();
    let (service, mut client) = loaded(&dir.path().join("registration")).await;
    // No token: UNAUTHENTICATED.
    let err = client.register_model(tonic::Request::new(register("a-1", "00001"))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // A reporter of a commune of Hà Nội cannot register in another province (Hà Giang, 02).
    let err = client.register_model(req(register("a-2", "00688"), &token("reporter", "00001"))).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // Nor for a sibling commune.
    let err = client.register_model(req(register("a-3", "00004"), &token("reporter", "00001"))).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // An analyst reads but does not write.
    let err = client.register_model(req(register("a-4", "00001"), &token("analyst", ""))).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // A reporter of the province writes for any unit inside it.
    let ok = client.register_model(req(register("a-5", "00004"), &token("reporter", "01"))).await.unwrap().into_inner();
    // An analyst of another province does not see it; one of Hà Nội does.
    let get = |t: String| {
        let mut c = client.clone();
        let id = ok.model_id.clone();
        async move { c.get_model(req(pr::GetModelRequest { model_id: id }, &t)).await }
    };
    assert_eq!(get(token("analyst", "02")).await.unwrap_err().code(), Code::PermissionDenied);
    assert!(get(token("analyst", "01")).await.is_ok());
    let listed =
        client.list_models(req(pr::ListModelsRequest::default(), &token("analyst", "02"))).await.unwrap().into_inner();
    assert_eq!(listed.total_size, 0);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_metrics_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let health_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let service =
        Service::registration_with_metrics(&dir.path().join("registration"), Some(metrics_addr), Some(health_addr))
            .await;
    // The plain-text health listener (for probes when the service port is TLS only).
    let plain =
        tonic::transport::Channel::from_shared(format!("http://{health_addr}")).unwrap().connect().await.unwrap();
    let r = dvk_tests::tonic_health_client(plain)
        .check(dvk_tests::health::HealthCheckRequest { service: dvk_registration::SERVICE_NAME.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, dvk_tests::health::health_check_response::ServingStatus::Serving as i32);
    // Health: SERVING for the service and overall.
    let mut health = dvk_tests::tonic_health_client(service.channel().await);
    for name in [dvk_registration::SERVICE_NAME, ""] {
        let r =
            health.check(dvk_tests::health::HealthCheckRequest { service: name.into() }).await.unwrap().into_inner();
        assert_eq!(r.status, dvk_tests::health::health_check_response::ServingStatus::Serving as i32, "{name:?}");
    }
    // Reflection lists the service.
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(service.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&dvk_registration::SERVICE_NAME.to_owned()), "{names:?}");
    // One refused call shows in the metrics under its code.
    let mut client = service.client().await;
    let _ = client.get_model(tonic::Request::new(pr::GetModelRequest { model_id: "x".into() })).await;
    let mut http = tokio::net::TcpStream::connect(metrics_addr).await.unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains(
            "dvk_rpc_requests_total{service=\"registration\",method=\"GetModel\",code=\"Unauthenticated\"} 1"
        ),
        "{body}"
    );
    assert!(body.contains("dvk_log_head_position"), "{body}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::registration(&dir.path().join("registration")).await;
    let mut client = service.client().await;
    let head = service.log.head();
    // 17 MiB of text in one request; the service accepts at most 16 MiB here.
    let mut request = register("huge", "00001");
    request.details.as_mut().unwrap().objectives = "x".repeat(17 << 20);
    let e = client.register_model(req(request, &token("admin", ""))).await.unwrap_err();
    // The server answers as soon as it reads the message's length, and stops reading:
    // the client sees RESOURCE_EXHAUSTED, or, still sending, its own stream reset.
    let refused = e.code() == Code::ResourceExhausted || (e.code() == Code::Internal && e.message().contains("h2"));
    assert!(refused, "{e:?}");
    assert_eq!(service.log.head(), head);
    // The service still answers.
    let ok = client
        .list_units(req(
            pr::ListUnitsRequest { tree: Tree::Tree2025 as i32, ..Default::default() },
            &token("analyst", ""),
        ))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_size_limit_is_resource_exhausted_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = dvk_tests::settings(&dir.path().join("registration"), None);
    settings.max_message_bytes = 256 << 10;
    let service = Service::registration_with_settings(settings).await;
    let mut client = service.client().await;
    let csv = "Tỉnh Thành Phố,Mã TP,Quận Huyện,Mã QH,Phường Xã,Mã PX,Cấp,Tên Tiếng Anh\n\
               Thành phố Hà Nội,01,Quận Ba Đình,001,Phường Phúc Xá,00001,Phường,\n";
    let file = gso::read(csv.as_bytes()).unwrap();
    import::import(&mut client, &token("admin", ""), &file, "t", |_| {}).await.unwrap();
    let head = service.log.head();
    // A request over the limit (small enough to be sent whole before the answer).
    let mut request = register("huge", "00001");
    request.details.as_mut().unwrap().objectives = "x".repeat(300 << 10);
    let e = client.register_model(req(request, &token("admin", ""))).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("found 307"), "{e:?}");
    assert!(e.message().contains("the limit is: 262144 bytes"), "{e:?}");
    assert_eq!(service.log.head(), head, "nothing written");
    // Four models with every description at its longest (5,000 letters of 3 bytes):
    // each request is about 100 KiB, the list of all four about 400 KiB.
    let long = "ệ".repeat(5_000);
    for i in 0..4 {
        let mut request = register(&format!("long-{i}"), "00001");
        let d = request.details.as_mut().unwrap();
        for text in [
            &mut d.rationale,
            &mut d.objectives,
            &mut d.method,
            &mut d.area,
            &mut d.target_group,
            &mut d.implementing_forces,
            &mut d.expected_outputs,
        ] {
            text.clone_from(&long);
        }
        client.register_model(req(request, &token("admin", ""))).await.unwrap();
    }
    // An answer over the limit.
    let all = |page_size| req(pr::ListModelsRequest { page_size, ..Default::default() }, &token("analyst", ""));
    let e = client.list_models(all(0)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("the limit is: 262144 bytes"), "{e:?}");
    // Smaller pages are served.
    let page = client.list_models(all(2)).await.unwrap().into_inner();
    assert_eq!(page.models.len(), 2);
    service.stop().await;
}
