//! An audit trail: who did what to which resource, with free-text details as labels.
//!
//! `cargo run --release -p keplordb --example audit`

use keplordb::{Cursor, Schema};

#[derive(Debug, Schema)]
#[keplordb(id = 3)]
pub struct Audit {
    #[dim(bloom, rollup)]
    pub actor: String,
    #[dim(rollup)]
    pub action: String,
    #[dim]
    pub resource: String,
    #[label]
    pub detail: String,
    #[label]
    pub source_ip: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let engine: AuditEngine = Audit::open(dir.path())?;
    let t0: i64 = 1_764_028_800_000_000_000;
    let actors = ["root", "deploy-bot", "maria", "kenji", "auditor"];
    let actions = ["login", "read", "update", "delete", "grant"];
    for i in 0..1_200i64 {
        let actor = actors[(i % 5) as usize];
        let action = actions[(i * 3 % 5) as usize];
        let event = Audit::new(t0 + i * 30_000_000_000)
            .id(format!("audit-{i:04}"))
            .actor(actor)
            .action(action)
            .resource(format!("project/{}", i % 12))
            .detail(format!(
                "{actor} {action} on project/{} (ticket OPS-{})",
                i % 12,
                1000 + i
            ))
            .source_ip(format!("192.168.1.{}", i % 40))
            .status(if action == "delete" && (i / 5) % 5 == 0 {
                403
            } else {
                200
            })
            .into_log_event();
        // Audit records must not be lost: every append is fsynced.
        engine.append_durable(&event)?;
    }
    let deletes = engine.aggregate(&Audit::filter().action("delete").into_filter())?;
    let denied = engine.aggregate(
        &Audit::filter()
            .action("delete")
            .status_range(403, 404)
            .into_filter(),
    )?;
    println!(
        "deletes: {} ({} denied)",
        deletes.event_count, denied.event_count
    );
    assert_eq!(deletes.event_count, 240);
    assert_eq!(denied.event_count, 240 / 5);

    // Everything root did, newest first, paged five at a time.
    use AuditFields as _;
    let mut filter = Audit::filter().actor("root").into_filter();
    let mut pages = 0;
    let mut seen = 0;
    loop {
        let page = engine.query_recent(&filter, 5)?;
        if page.is_empty() {
            break;
        }
        if pages == 0 {
            println!("\nroot, latest:");
            for e in &page {
                println!("  {} {:<7} {}", e.id, e.action(), e.detail());
            }
        }
        seen += page.len();
        pages += 1;
        filter.cursor = Some(Cursor::from(&page[page.len() - 1]));
    }
    println!("root: {seen} records in {pages} pages");
    assert_eq!(seen, 240);

    // A record can be erased (e.g. a right-to-be-forgotten request): the delete is durable.
    assert!(engine.delete_event("audit-0000")?);
    assert_eq!(engine.get_event("audit-0000")?, None);

    let day = keplordb::day_of(t0);
    println!("\n{:<11} {:<7} {:>6}", "actor", "action", "count");
    let rollups = engine.query_rollups(day, day, &[None, Some("grant")])?;
    for (k, v) in &rollups {
        println!("{:<11} {:<7} {:>6}", k.dims[0], k.dims[1], v.event_count);
    }
    assert_eq!(rollups.iter().map(|(_, v)| v.event_count).sum::<u64>(), 240);
    Ok(())
}
