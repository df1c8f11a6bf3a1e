//! Roll-ups beside batch SQL (the DHIS2 way), on the 1,000,000-event aggregation log.
//!
//! - ours: the aggregation's incremental projection. GetRollup from 64 clients over
//!   gRPC, the aggregation serving that log on its own 2-thread runtime; freshness:
//!   write sent → visible in the nation's roll-up (a fresh registration + reporting +
//!   aggregation in one process, linked through their logs as `dvk` runs them).
//! - PostgreSQL: the same facts (the units of both trees, every model flow and every
//!   report the projection holds after folding the log) in fact tables; the analytics
//!   table rebuilt from them by `GROUP BY tree, period, ROLLUP(province, district,
//!   commune)` into a new table, indexed, analysed and swapped in (as DHIS2 builds its
//!   analytics tables); 64 clients querying the prepared table with a prepared
//!   statement.
//!
//! The SQL roll-up does less than ours: it does not re-express facts across the two
//! trees (the 2025 reorganisation) and keeps no history (`as_of`); the rows it shares
//! with ours (pre-2025 tree) are checked equal.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dvk_aggregation::projection::{Flow, half_of};
use dvk_client::import;
use dvk_domain::report::Figure;
use dvk_domain::{Period, Tree, UnitCode};
use dvk_eventlog::{EventLog, LogConfig};
use dvk_proto::aggregation::v1::{GetRollupRequest, aggregation_service_client::AggregationServiceClient};
use dvk_proto::common::v1 as pc;
use dvk_codec::convert;
use sqlx::postgres::PgPoolCopyExt;
use tonic::transport::Channel;

use crate::{Run, Summary, env_usize, joined, median, ratio, settings, thousands, token, workload};

const CLIENTS: usize = 64;
const CONNECTIONS: usize = 8;
const PRE_PERIODS: [&str; 8] = ["2021-H1", "2021-H2", "2022-H1", "2022-H2", "2023-H1", "2023-H2", "2024-H1", "2024-H2"];

fn tree_code(t: Tree) -> i16 {
    match t {
        Tree::Pre2025 => 0,
        Tree::Y2025 => 1,
    }
}

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    for _ in 0..600 {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}"))?.connect().await {
            return Ok(ch);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the service at {addr} did not start")
}

/// Servers on their own 2-thread runtime (as PostgreSQL is a process of its own),
/// stopped on drop.
struct Background {
    addrs: Vec<SocketAddr>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.stop.take().expect("once").send(true);
        let _ = self.thread.take().expect("once").join();
    }
}

/// The aggregation over `dir/aggregation`; with `writers`, a fresh registration and
/// reporting in `dir` too, the aggregation following their logs.
fn start(dir: &Path, writers: bool) -> Background {
    let dir = dir.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            let mut tasks = tokio::task::JoinSet::new();
            let mut addrs = Vec::new();
            let mut links = dvk_aggregation::Links { registration: None, reporting: None };
            if writers {
                let s = settings(&dir, "registration");
                let reg_log = dvk_registration::open_log(&s).expect("registration log");
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addrs.push(l.local_addr().expect("addr"));
                tasks.spawn(dvk_registration::serve(l, s, reg_log.clone(), None, until(stopped.clone()), || {}));
                let s = settings(&dir, "reporting");
                let rep_log = dvk_reporting::open_log(&s).expect("reporting log");
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addrs.push(l.local_addr().expect("addr"));
                let rl = dvk_reporting::Links {
                    relay: None,
                    registration: Some(dvk_runtime::host::Upstream::Local(reg_log.clone())),
                };
                let schedule = crate::commands::schedule();
                tasks.spawn(dvk_reporting::serve(l, s, schedule, rep_log.clone(), rl, until(stopped.clone()), || {}));
                links = dvk_aggregation::Links {
                    registration: Some(dvk_runtime::host::Upstream::Local(reg_log)),
                    reporting: Some(dvk_runtime::host::Upstream::Local(rep_log)),
                };
            }
            let s = settings(&dir, "aggregation");
            let log = dvk_aggregation::open_log(&s).expect("aggregation log");
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addrs.push(l.local_addr().expect("addr"));
            tasks.spawn(dvk_aggregation::serve(l, s, 125_000, log, links, until(stopped), || {}));
            tx.send(addrs).expect("addresses");
            while let Some(r) = tasks.join_next().await {
                r.expect("task").expect("service");
            }
        });
    });
    let addrs = rx.recv().expect("the servers start");
    Background { addrs, stop: Some(stop), thread: Some(thread) }
}

/// One query of the mix: a unit (None: the nation) of a tree, a half-year, approved
/// figures only or not.
#[derive(Debug, Clone)]
struct Query {
    tree: Tree,
    unit: Option<String>,
    period: &'static str,
    include_unapproved: bool,
}

fn queries() -> Vec<Query> {
    let mut targets: Vec<(Tree, Option<String>)> = vec![(Tree::Pre2025, None), (Tree::Y2025, None)];
    for (tree, name) in [(Tree::Pre2025, workload::TREE_FILES[0]), (Tree::Y2025, workload::TREE_FILES[1])] {
        let file = workload::gso_file(name);
        targets.extend(file.units.iter().map(|(_, u)| (tree, Some(u.code.as_ref().expect("code").code.clone()))));
    }
    (0..50_000)
        .map(|i| {
            let (tree, unit) = targets[(i * 104_729) % targets.len()].clone();
            let period = if tree == Tree::Pre2025 { PRE_PERIODS[i % PRE_PERIODS.len()] } else { "2025-H2" };
            Query { tree, unit, period, include_unapproved: i % 2 == 0 }
        })
        .collect()
}

/// `CLIENTS` tasks share `n` queries of the mix; `call(client, query)`.
async fn drive<F, Fut>(n: usize, mix: Arc<Vec<Query>>, call: F) -> anyhow::Result<Run>
where
    F: Fn(usize, Query) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (call, mix) = (call.clone(), mix.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while i < n {
                let q = mix[i % mix.len()].clone();
                let t = Instant::now();
                call(c, q).await?;
                lat.push(t.elapsed());
                i += CLIENTS;
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.extend(t.await??);
    }
    Ok(Run::from(&mut lat, started.elapsed()))
}

const CREATE_FACTS: &str = "
DROP TABLE IF EXISTS units, model_flows, reports, analytics, analytics_new;
CREATE TABLE units (tree smallint NOT NULL, code text NOT NULL, level text NOT NULL, parent text,
    PRIMARY KEY (tree, code));
CREATE TABLE model_flows (tree smallint NOT NULL, unit text NOT NULL, period text NOT NULL, kind text NOT NULL,
    field smallint, exemplary boolean NOT NULL);
";

fn create_reports() -> String {
    let latest: Vec<String> = Figure::ALL.iter().map(|f| format!("l_{f} bigint NOT NULL")).collect();
    let approved: Vec<String> = Figure::ALL.iter().map(|f| format!("a_{f} bigint")).collect();
    format!(
        "CREATE TABLE reports (tree smallint NOT NULL, unit text NOT NULL, period text NOT NULL, \
         approved boolean NOT NULL, {}, {})",
        latest.join(", "),
        approved.join(", ")
    )
}

/// The batch: the analytics table rebuilt from the facts and swapped in.
fn rebuild_sql() -> Vec<String> {
    let zeros =
        |prefix: &str| Figure::ALL.iter().map(|f| format!("0::bigint AS {prefix}{f}")).collect::<Vec<_>>().join(", ");
    let cols = |prefix: &str| Figure::ALL.iter().map(|f| format!("{prefix}{f}")).collect::<Vec<_>>().join(", ");
    let approved_cols = Figure::ALL.iter().map(|f| format!("coalesce(a_{f}, 0)")).collect::<Vec<_>>().join(", ");
    let sums = |prefix: &str| {
        Figure::ALL.iter().map(|f| format!("sum(f.{prefix}{f})::bigint AS {prefix}{f}")).collect::<Vec<_>>().join(", ")
    };
    vec![
        "DROP TABLE IF EXISTS analytics_new".into(),
        format!(
            "CREATE TABLE analytics_new AS
             WITH h AS (
                 SELECT c.tree, c.code AS commune,
                        CASE WHEN p.level = 'district' THEN p.code END AS district,
                        CASE WHEN p.level = 'province' THEN p.code ELSE p.parent END AS province
                 FROM units c JOIN units p ON p.tree = c.tree AND p.code = c.parent
                 WHERE c.level = 'commune'),
             f AS (
                 SELECT tree, unit, period,
                        (kind = 'registered')::int AS registered, (kind = 'started')::int AS implementing,
                        (kind = 'recognized')::int AS recognized, (kind = 'recognized' AND exemplary)::int AS exemplary,
                        0 AS reports_all, 0 AS reports_approved, {}, {}
                 FROM model_flows
                 UNION ALL
                 SELECT tree, unit, period, 0, 0, 0, 0, 1, approved::int, {}, {}
                 FROM reports)
             SELECT f.tree, f.period, coalesce(h.commune, h.district, h.province, '') AS unit,
                    sum(f.registered)::bigint AS registered, sum(f.implementing)::bigint AS implementing,
                    sum(f.recognized)::bigint AS recognized, sum(f.exemplary)::bigint AS exemplary,
                    sum(f.reports_all)::bigint AS reports_all, sum(f.reports_approved)::bigint AS reports_approved,
                    {}, {}
             FROM f JOIN h ON h.tree = f.tree AND h.commune = f.unit
             GROUP BY f.tree, f.period, ROLLUP (h.province, h.district, h.commune)
             HAVING NOT (GROUPING(h.commune) = 1 AND GROUPING(h.district) = 0 AND h.district IS NULL)",
            zeros("l_"),
            zeros("a_"),
            cols("l_"),
            approved_cols,
            sums("l_"),
            sums("a_"),
        ),
        "CREATE UNIQUE INDEX analytics_new_key ON analytics_new (tree, period, unit)".into(),
        "ANALYZE analytics_new".into(),
        "BEGIN".into(),
        "DROP TABLE IF EXISTS analytics".into(),
        "ALTER TABLE analytics_new RENAME TO analytics".into(),
        "ALTER INDEX analytics_new_key RENAME TO analytics_key".into(),
        "COMMIT".into(),
    ]
}

fn level_name(level: i32) -> &'static str {
    match pc::Level::try_from(level) {
        Ok(pc::Level::Province) => "province",
        Ok(pc::Level::District) => "district",
        Ok(pc::Level::Commune) => "commune",
        _ => "other",
    }
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "\\N".into(), |v| v.to_string())
}

/// Copies the facts of `state` and the units of both trees into PostgreSQL; returns
/// (model flows, reports, units).
async fn load_facts(pool: &sqlx::PgPool, state: &dvk_aggregation::State) -> anyhow::Result<(usize, usize, usize)> {
    sqlx::raw_sql(CREATE_FACTS).execute(pool).await?;
    sqlx::query(&create_reports()).execute(pool).await?;
    let mut units = String::new();
    let mut n_units = 0;
    for (tree, name) in [(Tree::Pre2025, workload::TREE_FILES[0]), (Tree::Y2025, workload::TREE_FILES[1])] {
        for (_, u) in workload::gso_file(name).units {
            let code = u.code.map(|c| c.code).unwrap_or_default();
            let parent = u.parent.map(|c| c.code).filter(|c| !c.is_empty());
            units.push_str(&format!(
                "{}\t{code}\t{}\t{}\n",
                tree_code(tree),
                level_name(u.level),
                parent.unwrap_or_else(|| "\\N".into())
            ));
            n_units += 1;
        }
    }
    let mut flows = String::new();
    let mut n_flows = 0;
    for fact in state.models.values() {
        for (date, flow) in &fact.flows {
            let (kind, field, exemplary) = match flow {
                Flow::Registered(f) => ("registered", Some(dvk_aggregation::projection::field_index(*f) as i64), false),
                Flow::Started => ("started", None, false),
                Flow::Recognized { exemplary, .. } => ("recognized", None, *exemplary),
                Flow::Commended => ("commended", None, false),
                Flow::Replicated => ("replicated", None, false),
                Flow::Retired => ("retired", None, false),
            };
            flows.push_str(&format!(
                "{}\t{}\t{}\t{kind}\t{}\t{exemplary}\n",
                tree_code(fact.tree),
                fact.unit.as_str(),
                half_of(*date),
                opt(field)
            ));
            n_flows += 1;
        }
    }
    let mut reports = String::new();
    for fact in state.reports.values() {
        let latest: Vec<String> = fact.latest.iter().map(|(_, v)| v.to_string()).collect();
        let approved: Vec<String> = match &fact.approved {
            Some(a) => a.iter().map(|(_, v)| v.to_string()).collect(),
            None => vec!["\\N".to_owned(); Figure::COUNT],
        };
        reports.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            tree_code(fact.tree),
            fact.unit.as_str(),
            fact.period,
            fact.approved.is_some(),
            latest.join("\t"),
            approved.join("\t")
        ));
    }
    for (table, data) in [("units", units), ("model_flows", flows), ("reports", reports)] {
        let mut copy = pool.copy_in_raw(&format!("COPY {table} FROM STDIN")).await?;
        copy.send(data.into_bytes()).await?;
        copy.finish().await?;
    }
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok((n_flows, state.reports.len(), n_units))
}

/// The pre-2025 rows of the analytics table against our projection's roll-ups:
/// (equal, compared).
async fn cross_check(pool: &sqlx::PgPool, state: &dvk_aggregation::State) -> anyhow::Result<(usize, usize)> {
    type Row = (String, String, i64, i64, i64, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT period, unit, registered, implementing, recognized, reports_all, reports_approved, \
         l_funds_mobilized_vnd FROM analytics WHERE tree = 0",
    )
    .fetch_all(pool)
    .await?;
    let (mut equal, mut compared) = (0, 0);
    for (period, unit, registered, implementing, recognized, all, approved, funds) in rows {
        if !PRE_PERIODS.contains(&period.as_str()) {
            continue;
        }
        let p = Period::parse("p", &period)?;
        let code = if unit.is_empty() { None } else { Some(UnitCode::parse("u", &unit)?) };
        let r = state.rollup(Tree::Pre2025, code.as_ref(), p);
        compared += 1;
        if (r.models.registered, r.models.implementing, r.models.recognized(), r.cell.all_reports)
            == (registered, implementing, recognized, all)
            && (r.cell.approved_reports, r.cell.all[Figure::FundsMobilized]) == (approved, funds)
        {
            equal += 1;
        } else if compared - equal <= 3 {
            println!(
                "  differs at {unit:?} {period}: ours {:?}, sql {registered} {implementing} {recognized} {all} {approved} {funds}",
                (
                    r.models.registered,
                    r.models.implementing,
                    r.models.recognized(),
                    r.cell.all_reports,
                    r.cell.approved_reports,
                    r.cell.all[Figure::FundsMobilized]
                )
            );
        }
    }
    Ok((equal, compared))
}

/// Part 2, as Markdown. `dir` holds the prepared log at `dir/aggregation`.
pub fn compare(pg: &str, dir: &Path, runs: usize, rt: &tokio::runtime::Runtime) -> anyhow::Result<String> {
    let queries_per_run = env_usize("DVK_COMPARE_QUERIES", 50_000);
    let writes = env_usize("DVK_COMPARE_WRITES", 5_000);
    println!("rollups: {runs} runs, {queries_per_run} queries per run, {writes} writes per freshness run");

    // The facts: what our projection holds after folding the log (timed: the rebuild).
    let log_dir = dir.join("aggregation");
    let mut rebuild_secs = Vec::new();
    let mut state = None;
    for _ in 0..runs {
        let log = EventLog::open(LogConfig::new(&log_dir, "aggregation"))?;
        let t = Instant::now();
        let (s, _) = dvk_runtime::host::replay::<dvk_aggregation::State>(&log)?;
        rebuild_secs.push(t.elapsed().as_secs_f64());
        log.close()?;
        state = Some(s);
    }
    let state = state.expect("at least one run");
    let events = {
        let log = EventLog::open(LogConfig::new(&log_dir, "aggregation"))?;
        let head = log.head();
        log.close()?;
        head
    };

    let pool = rt.block_on(sqlx::postgres::PgPoolOptions::new().max_connections(CLIENTS as u32).connect(pg))?;
    let t = Instant::now();
    let (flows, reports, units) = rt.block_on(load_facts(&pool, &state))?;
    println!("  loaded {flows} model flows, {reports} reports, {units} units in {:.1} s", t.elapsed().as_secs_f64());
    let mut batch_secs = Vec::new();
    for run in 0..runs {
        let t = Instant::now();
        rt.block_on(async {
            let mut conn = pool.acquire().await?;
            for stmt in rebuild_sql() {
                sqlx::raw_sql(&stmt).execute(&mut *conn).await?;
            }
            anyhow::Ok(())
        })?;
        let secs = t.elapsed().as_secs_f64();
        println!("  run {run}: analytics table rebuilt in {secs:.2} s");
        batch_secs.push(secs);
    }
    let (rows,): (i64,) = rt.block_on(sqlx::query_as("SELECT count(*) FROM analytics").fetch_one(&pool))?;
    let (equal, compared) = rt.block_on(cross_check(&pool, &state))?;
    println!("  analytics rows: {rows}; pre-2025 rows equal to ours: {equal} of {compared}");
    let cells = state.cells.len();
    drop(state);

    let mix = Arc::new(queries());
    // PostgreSQL: the prepared table, 64 clients, a prepared statement each.
    let mut sql_runs = Vec::new();
    for run in 0..runs {
        let pool = pool.clone();
        let r = rt.block_on(drive(queries_per_run, mix.clone(), move |_, q| {
            let pool = pool.clone();
            async move {
                let row = sqlx::query("SELECT * FROM analytics WHERE tree = $1 AND period = $2 AND unit = $3")
                    .bind(tree_code(q.tree))
                    .bind(q.period)
                    .bind(q.unit.unwrap_or_default())
                    .fetch_optional(&pool)
                    .await?;
                std::hint::black_box(row.is_some());
                Ok(())
            }
        }))?;
        println!("  run {run}: SQL {} queries/s, p50 {:.2} ms, p99 {:.2} ms", thousands(r.per_sec), r.p50_ms, r.p99_ms);
        sql_runs.push(r);
    }
    rt.block_on(pool.close());
    let sql = Summary::of(&sql_runs);

    // Ours: GetRollup over gRPC, the aggregation serving the same log.
    let ours = {
        let servers = start(dir, false);
        let addr = servers.addrs[0];
        let analyst = token("analyst");
        rt.block_on(async {
            // The service answers once it has read the log.
            let mut client = AggregationServiceClient::new(channel(addr).await?);
            let r = GetRollupRequest {
                period: Some(pc::Period { code: "2024-H1".into() }),
                tree: pc::Tree::Pre2025 as i32,
                ..Default::default()
            };
            client.get_rollup(import::authorized(r, &analyst)?).await?;
            anyhow::Ok(())
        })?;
        let mut results = Vec::new();
        for run in 0..runs {
            let r = rt.block_on(async {
                let mut clients = Vec::new();
                for _ in 0..CONNECTIONS {
                    clients.push(AggregationServiceClient::new(channel(addr).await?));
                }
                let clients = Arc::new(clients);
                let token = analyst.clone();
                drive(queries_per_run, mix.clone(), move |c, q| {
                    let mut client = clients[c % CONNECTIONS].clone();
                    let token = token.clone();
                    async move {
                        let r = GetRollupRequest {
                            unit: q.unit.map(|code| pc::UnitCode { code }),
                            period: Some(pc::Period { code: q.period.into() }),
                            tree: convert::tree_out(q.tree) as i32,
                            include_unapproved: q.include_unapproved,
                            ..Default::default()
                        };
                        client.get_rollup(import::authorized(r, &token)?).await?;
                        Ok(())
                    }
                })
                .await
            })?;
            println!(
                "  run {run}: GetRollup {} queries/s, p50 {:.2} ms, p99 {:.2} ms",
                thousands(r.per_sec),
                r.p50_ms,
                r.p99_ms
            );
            results.push(r);
        }
        drop(servers);
        Summary::of(&results)
    };

    // Ours: freshness, write sent → in the nation's roll-up, services linked locally.
    let fresh = freshness(runs, writes, rt)?;

    let rebuild = median(rebuild_secs.clone());
    let batch = median(batch_secs.clone());
    let secs = |x: f64| format!("{x:.2}");
    let mut md = String::from("### 2. Roll-ups beside batch SQL (the DHIS2 way)\n\n");
    md.push_str(&format!(
        "The same facts: the {} events of the aggregation log fold into {} model flows and {} reports at communes \
         ({} roll-up cells in ours); PostgreSQL holds them in fact tables beside the {} units of both trees, and its \
         analytics table has {} rows. Cross-check: {equal} of {compared} pre-2025 analytics rows equal our roll-ups \
         (models registered, implementing, recognised, reports, approved reports, funds). Queries: {queries_per_run} \
         per run from {CLIENTS} clients, the same mix for both (units of every level of both trees and the nation, \
         half-years, half of them with unapproved reports). Part: `rollups`.\n\n",
        thousands(events as f64),
        thousands(flows as f64),
        thousands(reports as f64),
        thousands(cells as f64),
        thousands(units as f64),
        thousands(rows as f64),
    ));
    md.push_str(
        "| what | ours (incremental projection) | PostgreSQL (batch `GROUP BY ROLLUP`) | ours against batch |\n",
    );
    md.push_str("|---|---|---|---:|\n");
    md.push_str(&format!(
        "| rebuild (median; runs in s) | whole projection from the log: **{} s** ({}) — needed only to recover | \
         analytics table from the facts: **{} s** ({}) — needed for every refresh | {} |\n",
        secs(rebuild),
        joined(&rebuild_secs, secs),
        secs(batch),
        joined(&batch_secs, secs),
        ratio(batch / rebuild)
    ));
    md.push_str(&format!(
        "| staleness | write → in the nation's roll-up, p99: **{:.1} ms** (p50 {:.1} ms; p99 runs {}) | at least the \
         rebuild, **{} s**, plus the schedule interval: up to 24 h with DHIS2's nightly default | ≥ {}× fresher \
         (batch rebuilt back to back) |\n",
        fresh.p99_ms,
        fresh.p50_ms,
        fresh.p99_runs_text(),
        secs(batch),
        thousands(batch * 1e3 / fresh.p99_ms),
    ));
    md.push_str(&format!(
        "| query, {CLIENTS} clients: queries/s (median; runs) | GetRollup over gRPC: **{}** ({}) | `SELECT` on the \
         indexed table: **{}** ({}) | {} |\n",
        thousands(ours.per_sec),
        ours.runs_text(),
        thousands(sql.per_sec),
        sql.runs_text(),
        ratio(ours.per_sec / sql.per_sec)
    ));
    md.push_str(&format!(
        "| query p50 / p99 (medians; p99 runs in ms) | {:.2} / **{:.2} ms** ({}) | {:.2} / **{:.2} ms** ({}) | {} |\n\n",
        ours.p50_ms,
        ours.p99_ms,
        ours.p99_runs_text(),
        sql.p50_ms,
        sql.p99_ms,
        sql.p99_runs_text(),
        ratio(sql.p99_ms / ours.p99_ms)
    ));
    md.push_str(&format!(
        "Freshness: registration, reporting and aggregation in one process linked through their logs (as `dvk` runs \
         them), the pre-2025 tree imported; {writes} writes per run at 1,000/s, alternately RegisterModel and \
         SubmitReport, each timed from sending it until GetRollup of the nation, asked with the write's position, \
         answers. Over the broker the same measurement is in the aggregation section above.\n\n"
    ));
    Ok(md)
}

/// Write sent → visible in the nation's roll-up, at 1,000 writes/s.
fn freshness(runs: usize, writes: usize, rt: &tokio::runtime::Runtime) -> anyhow::Result<Summary> {
    let dir = tempfile::tempdir()?;
    let servers = start(dir.path(), true);
    let (reg_addr, rep_addr, agg_addr) = (servers.addrs[0], servers.addrs[1], servers.addrs[2]);
    let pre = workload::gso_file(workload::TREE_FILES[0]);
    let communes: Arc<Vec<String>> = Arc::new(
        pre.units
            .iter()
            .filter(|(_, u)| u.level == pc::Level::Commune as i32)
            .map(|(_, u)| u.code.as_ref().expect("code").code.clone())
            .collect(),
    );
    let (analyst, reporter) = (token("analyst"), token("reporter"));
    rt.block_on(async {
        let mut client = dvk_proto::registration::v1::registration_service_client::RegistrationServiceClient::new(
            channel(reg_addr).await?,
        )
        .max_encoding_message_size(16 << 20);
        import::import(&mut client, &token("admin"), &pre, "pre", |_| {}).await?;
        let mut rep =
            dvk_proto::reporting::v1::reporting_service_client::ReportingServiceClient::new(channel(rep_addr).await?);
        loop {
            let r = rep
                .list_reports(import::authorized(
                    dvk_proto::reporting::v1::ListReportsRequest {
                        period: Some(pc::Period { code: "2024".into() }),
                        ..Default::default()
                    },
                    &analyst,
                )?)
                .await;
            if r.is_ok_and(|r| r.into_inner().completeness.is_some_and(|c| c.expected > 10_000)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::Ok(())
    })?;
    let periods =
        ["2021-H1", "2021-H2", "2022-H1", "2022-H2", "2023-H1", "2023-H2", "2024-H1", "2024-H2", "2022", "2023"];
    let mut results = Vec::new();
    for run in 0..runs {
        let r = rt.block_on(async {
            let reg = dvk_proto::registration::v1::registration_service_client::RegistrationServiceClient::new(
                channel(reg_addr).await?,
            );
            let rep = dvk_proto::reporting::v1::reporting_service_client::ReportingServiceClient::new(
                channel(rep_addr).await?,
            );
            let agg = AggregationServiceClient::new(channel(agg_addr).await?);
            let mut tasks = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let started = Instant::now();
            for i in 0..writes {
                tick.tick().await;
                let (mut reg, mut rep, mut agg) = (reg.clone(), rep.clone(), agg.clone());
                let (reporter, analyst) = (reporter.clone(), analyst.clone());
                let unit = communes[(run * writes + i) * 31 % communes.len()].clone();
                let period = periods[run % periods.len()];
                tasks.push(tokio::spawn(async move {
                    let t = Instant::now();
                    let position = if i % 2 == 0 {
                        let r = dvk_proto::registration::v1::RegisterModelRequest {
                            request_id: format!("fresh-{run}-{i}"),
                            unit: Some(pc::UnitCode { code: unit }),
                            registered_on: Some(pc::Date { year: 2024, month: 5, day: 2 }),
                            details: Some(convert::details_out(&workload::details(
                                i as u64,
                                dvk_domain::model::Field::Economy,
                            ))),
                        };
                        reg.register_model(import::authorized(r, &reporter)?).await?.into_inner().position
                    } else {
                        let r = dvk_proto::reporting::v1::SubmitReportRequest {
                            request_id: format!("fresh-{run}-{i}"),
                            unit: Some(pc::UnitCode { code: unit }),
                            period: Some(pc::Period { code: period.into() }),
                            figures: Some(pc::Figures { models_registered: 3, ..Default::default() }),
                            summary: String::new(),
                        };
                        rep.submit_report(import::authorized(r, &reporter)?).await?.into_inner().position
                    };
                    let position = position.ok_or_else(|| anyhow::anyhow!("no position in the answer"))?;
                    let mut q = import::authorized(
                        GetRollupRequest {
                            period: Some(pc::Period { code: "2024".into() }),
                            tree: pc::Tree::Pre2025 as i32,
                            min_positions: vec![position],
                            ..Default::default()
                        },
                        &analyst,
                    )?;
                    q.set_timeout(Duration::from_secs(30));
                    agg.get_rollup(q).await?;
                    anyhow::Ok(t.elapsed())
                }));
            }
            let mut lat = Vec::new();
            for t in tasks {
                lat.push(t.await??);
            }
            anyhow::Ok(Run::from(&mut lat, started.elapsed()))
        })?;
        println!("  run {run}: freshness p50 {:.1} ms, p99 {:.1} ms", r.p50_ms, r.p99_ms);
        results.push(r);
    }
    drop(servers);
    Ok(Summary::of(&results))
}
