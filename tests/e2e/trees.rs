//! The two trees on the real GSO files: the import reconciles them (corrections,
//! recoded units linked, units without a counterpart reported), `GetUnit` says how each
//! unit maps, figures without a counterpart are reported as unassigned (never
//! dropped), the split rule follows the people, and an operator's supplementary link
//! re-expresses the past.

use std::time::Duration;

use dvk_client::import;
use dvk_domain::reconcile::Side;
use dvk_domain::schedule::{Deadline, Schedule};
use dvk_gso as gso;
use dvk_proto::aggregation::v1 as pa;
use dvk_proto::common::v1::{Figures, Period, Position, Tree, UnitCode};
use dvk_proto::registration::v1 as pr;
use dvk_proto::reporting::v1 as pp;
use dvk_runtime::host::Upstream;
use dvk_tests::{Service, admin_units, token};

fn req<T>(message: T, token: &str) -> tonic::Request<T> {
    import::authorized(message, token).unwrap()
}

fn unit(code: &str) -> Option<UnitCode> {
    Some(UnitCode { code: code.into() })
}

fn period(code: &str) -> Option<Period> {
    Some(Period { code: code.into() })
}

/// Every period open for reports, due and locked far in the future.
fn open_schedule() -> Schedule {
    let open = Deadline { opens_before_end: 15, due_after_end: 36_500, locks_after_end: 36_500 };
    Schedule { half_year: open, year: open, stage: open }
}

fn figures(participants: i64) -> Figures {
    Figures { participants, dialogues_held: participants / 10, workdays: 7, ..Figures::default() }
}

async fn status(
    client: &mut pr::registration_service_client::RegistrationServiceClient<tonic::transport::Channel>,
    tree: Tree,
    code: &str,
) -> (pr::MappingStatus, String) {
    let u = client
        .get_unit(req(pr::GetUnitRequest { tree: tree as i32, code: unit(code) }, &token("analyst", "")))
        .await
        .unwrap()
        .into_inner();
    (u.mapping_status(), u.counterpart.map(|c| c.code).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_vanishes_between_the_trees_and_a_supplementary_link_reassigns_the_past() {
    let dir = tempfile::tempdir().unwrap();
    let registration = Service::registration(&dir.path().join("registration")).await;
    let admin = token("admin", "");
    let mut reg = registration.client().await.max_encoding_message_size(16 << 20);

    // The import reconciles the table with the list it follows.
    let mut reconciliation = None;
    for name in ["gso-communes-2025-01-04.csv", "gso-reorganization-2025-07-01.csv"] {
        let file = gso::read(std::fs::File::open(admin_units(name)).unwrap()).unwrap();
        let out = import::import(&mut reg, &admin, &file, name, |_| {}).await.unwrap();
        if name.contains("reorganization") {
            assert_eq!(file.corrections.iter().filter(|(_, o)| o.is_ok()).count(), 4);
            reconciliation = out.reconciliation;
        }
    }
    let r = reconciliation.expect("the table is reconciled with the pre-2025 list");
    assert_eq!(r.count(Side::Pre2025, "recoded"), 7);
    assert!(r.unmatched.iter().any(|u| u.code.as_str() == "03988" && u.outcome == "unassigned"));

    // GetUnit says how each unit maps.
    use pr::MappingStatus as M;
    assert_eq!(status(&mut reg, Tree::Pre2025, "27067").await.0, M::Recoded, "Phường 15, Phú Nhuận");
    assert_eq!(status(&mut reg, Tree::Pre2025, "03988").await, (M::Unassigned, "14".into()), "Tân Hợp, Mộc Châu");
    assert_eq!(status(&mut reg, Tree::Pre2025, "00556").await, (M::Split, "00562".into()), "Đặng Xá's people");
    assert_eq!(status(&mut reg, Tree::Pre2025, "00004").await, (M::Whole, "00004".into()));
    assert_eq!(status(&mut reg, Tree::Pre2025, "123").await, (M::Inferred, "14".into()), "a district");
    assert_eq!(status(&mut reg, Tree::Tree2025, "00562").await.0, M::Split);

    let links = dvk_reporting::Links { relay: None, registration: Some(Upstream::Local(registration.log.clone())) };
    let reporting = Service::reporting(&dir.path().join("reporting"), open_schedule(), links).await;
    let aggregation = Service::aggregation(
        &dir.path().join("aggregation"),
        dvk_aggregation::Links {
            registration: Some(Upstream::Local(registration.log.clone())),
            reporting: Some(Upstream::Local(reporting.log.clone())),
        },
    )
    .await;

    // Approved 2024-H1 reports at: Đặng Xá (split, its people went to Thuận An, listed
    // second), Phường 15 of Phú Nhuận (recoded), Tân Hợp and Viêng Lán (no
    // counterpart: Viêng Lán's only row carried another commune's name and was
    // corrected).
    let mut rep = reporting.reporting_client().await;
    let (reporter, approver) = (token("reporter", ""), token("approver", ""));
    let sent = [("00556", 1_000), ("27067", 200), ("03988", 30), ("04075", 4)];
    let mut last = 0;
    for (i, (code, participants)) in sent.iter().enumerate() {
        let mut tries = 0;
        let w = loop {
            // The reporting service learns the trees from registration's log.
            let r = rep
                .submit_report(req(
                    pp::SubmitReportRequest {
                        request_id: format!("r{i}"),
                        unit: unit(code),
                        period: period("2024-H1"),
                        figures: Some(figures(*participants)),
                        summary: String::new(),
                    },
                    &reporter,
                ))
                .await;
            match r {
                Ok(w) => break w.into_inner(),
                Err(e) if tries < 300 && e.code() == tonic::Code::InvalidArgument => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{code}: {e}"),
            }
        };
        let a = rep
            .approve_report(req(
                pp::ApproveReportRequest {
                    request_id: format!("a{i}"),
                    report_id: w.report_id,
                    expected_version: w.version,
                },
                &approver,
            ))
            .await
            .unwrap()
            .into_inner();
        last = a.position.unwrap().position;
    }
    let agg = aggregation.aggregation_client().await;
    let analyst = token("analyst", "");
    let rollup = |tree: Tree, code: Option<&str>, page_size: i32, page_token: &str| {
        let (mut agg, analyst) = (agg.clone(), analyst.clone());
        let request = pa::GetRollupRequest {
            unit: code.and_then(unit),
            period: period("2024-H1"),
            tree: tree as i32,
            min_positions: vec![Position { source: "reporting".into(), position: last }],
            unassigned_page_size: page_size,
            unassigned_page_token: page_token.into(),
            ..Default::default()
        };
        async move { agg.get_rollup(req(request, &analyst)).await.unwrap().into_inner() }
    };
    let participants = |r: &pa::Rollup| r.figures.unwrap_or_default().participants;
    let pre = rollup(Tree::Pre2025, None, 0, "").await;
    assert_eq!(participants(&pre), 1_234);
    assert!(pre.unassigned.is_none(), "every commune with a report has a counterpart in the pre-2025 tree");

    // On the 2025 tree, Tân Hợp and Viêng Lán are unassigned: not in the nation's
    // figures, reported beside them with the units they came from.
    let new = rollup(Tree::Tree2025, None, 0, "").await;
    let u = new.unassigned.clone().expect("unassigned figures are reported");
    assert_eq!(participants(&new), 1_200);
    assert_eq!(u.figures.unwrap().participants, 34);
    assert_eq!(participants(&new) + u.figures.unwrap().participants, participants(&pre));
    assert_eq!(u.reports_counted, 2);
    assert_eq!(u.total_units, 2);
    let from: Vec<(String, String)> =
        u.units.iter().map(|x| (x.unit.clone().unwrap().code, x.unit_name.clone())).collect();
    assert_eq!(from, [("03988".into(), "Xã Tân Hợp".into()), ("04075".into(), "Xã Viêng Lán".into())]);
    // Paged, in code order.
    let first = rollup(Tree::Tree2025, None, 1, "").await.unassigned.unwrap();
    assert_eq!((first.units.len(), first.next_page_token.as_str()), (1, "03988"));
    let second = rollup(Tree::Tree2025, None, 1, &first.next_page_token).await.unassigned.unwrap();
    assert_eq!(second.units[0].unit.clone().unwrap().code, "04075");
    assert!(second.next_page_token.is_empty());
    // Sơn La (14, which both communes belonged to) reports them too.
    let son_la = rollup(Tree::Tree2025, Some("14"), 0, "").await;
    assert_eq!(son_la.unassigned.unwrap().figures.unwrap().participants, 34);

    // The split follows the people: Thuận An, not Phù Đổng (listed first), has Đặng
    // Xá's figures, flagged as allocated.
    let thuan_an = rollup(Tree::Tree2025, Some("00562"), 0, "").await;
    assert_eq!((participants(&thuan_an), thuan_an.allocated_figures), (1_000, 1));
    assert_eq!(participants(&rollup(Tree::Tree2025, Some("00541"), 0, "").await), 0);
    // The recoded ward counts in its successor (split: the first listed).
    assert_eq!(participants(&rollup(Tree::Tree2025, Some("27058"), 0, "").await), 200);

    // An operator links Viêng Lán to Xã Yên Châu, which kept its code: the past is
    // re-expressed and the unassigned figure shrinks by exactly its report.
    let added = import::add_links(
        &mut reg,
        &admin,
        dvk_gso::reconciliation::read_links("old_code,new_code,note\n04075,04075,Nhập toàn bộ\n").unwrap(),
        "links.csv",
    )
    .await
    .unwrap();
    assert_eq!(added.links_added, 1);
    assert_eq!(status(&mut reg, Tree::Pre2025, "04075").await, (M::Supplementary, "04075".into()));
    let mut after = rollup(Tree::Tree2025, None, 0, "").await;
    for _ in 0..100 {
        if participants(&after) == 1_204 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = rollup(Tree::Tree2025, None, 0, "").await;
    }
    let u = after.unassigned.clone().expect("Tân Hợp is still unassigned");
    assert_eq!((participants(&after), u.figures.unwrap().participants, u.total_units), (1_204, 30, 1));
    assert_eq!(participants(&rollup(Tree::Tree2025, Some("04075"), 0, "").await), 4);

    // The other direction, 2025-H2 on the pre-2025 tree: Phường Mộc Châu (03980) was
    // formed from Mộc Lỵ (03980 in the table, not in the January list: listed first),
    // Chiềng Hắc (04012) and Mường Sang (04027). Its figures count in its first
    // predecessor the old tree has, flagged as allocated, not nowhere.
    let w = rep
        .submit_report(req(
            pp::SubmitReportRequest {
                request_id: "r-2025".into(),
                unit: unit("03980"),
                period: period("2025-H2"),
                figures: Some(figures(50)),
                summary: String::new(),
            },
            &reporter,
        ))
        .await
        .unwrap()
        .into_inner();
    let a = rep
        .approve_report(req(
            pp::ApproveReportRequest {
                request_id: "a-2025".into(),
                report_id: w.report_id,
                expected_version: w.version,
            },
            &approver,
        ))
        .await
        .unwrap()
        .into_inner();
    let h2 = |tree: Tree, code: Option<&str>| {
        let (mut agg, analyst) = (agg.clone(), analyst.clone());
        let request = pa::GetRollupRequest {
            unit: code.and_then(unit),
            period: period("2025-H2"),
            tree: tree as i32,
            min_positions: vec![a.position.clone().unwrap()],
            ..Default::default()
        };
        async move { agg.get_rollup(req(request, &analyst)).await.unwrap().into_inner() }
    };
    let old_nation = h2(Tree::Pre2025, None).await;
    assert_eq!((participants(&old_nation), old_nation.unassigned.is_none()), (50, true));
    let chieng_hac = h2(Tree::Pre2025, Some("04012")).await;
    assert_eq!((participants(&chieng_hac), chieng_hac.allocated_figures), (50, 1));
    assert_eq!(participants(&h2(Tree::Tree2025, None).await), 50);

    aggregation.stop().await;
    reporting.stop().await;
    registration.stop().await;
}
