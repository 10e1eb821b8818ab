//! The benchmark (`cargo bench --bench pipeline`) in its smoke mode: every measurement runs,
//! with tiny sizes, against the real binary, so the benchmark cannot rot between runs. The
//! figures are not checked (a debug build on a busy CI machine says nothing), losses are.

#[path = "../benches/pipeline/main.rs"]
#[allow(dead_code)]
mod pipeline;

use std::path::Path;

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_benchmark_runs_every_measurement_and_loses_nothing() {
    let cfg = pipeline::Config::smoke();
    let bin = Path::new(env!("CARGO_BIN_EXE_status-tracker"));
    let report = pipeline::run(&cfg, bin, Path::new(env!("CARGO_MANIFEST_DIR")), &mut |l| eprintln!("{l}")).await;
    assert_eq!(report.floor_jetstream.n, cfg.floor_samples);
    assert_eq!(report.idle.n, cfg.idle_samples);
    // The correlator's steps at idle, from its metrics: every step of every probe's batch.
    let steps: Vec<_> = report.idle_steps.iter().map(|(step, _, _)| *step).collect();
    assert_eq!(steps, ["look_up", "correlate", "commit"]);
    for (step, us, batches) in &report.idle_steps {
        assert!(*batches >= 1.0 && *batches <= cfg.idle_samples as f64, "{step}: {batches} batches");
        assert!(us.is_finite() && *us >= 0.0, "{step}: {us} µs");
    }
    assert!(report.idle_steps[2].1 > 0.0, "a commit takes time");
    for run in &report.runs {
        assert_eq!(
            (run.errors, run.missing),
            (0, 0),
            "{} senders: webhooks refused or requests not available",
            run.senders
        );
        assert!(run.applied_rate() > 0.0);
    }
    // Every run of the sender counts (fill runs aside) has JetStream's own rate beside it.
    let floors: Vec<_> = report.runs.iter().filter_map(|r| r.floor.map(|f| (r.senders, f))).collect();
    assert_eq!(floors.iter().map(|(n, _)| *n).collect::<Vec<_>>(), cfg.senders, "{floors:?}");
    assert!(floors.iter().all(|(_, f)| *f > 0.0), "{floors:?}");
    let requests: u64 = report.runs.iter().map(|r| r.requests).sum::<u64>() + cfg.idle_samples as u64;
    assert!(requests >= *cfg.checkpoints.last().unwrap());
    // Each checkpoint at its own count, even when a throughput run would pass it (smoke: 40
    // comes before the idle probe's 20 plus a run's 24).
    assert_eq!(report.pages.iter().map(|p| p.requests).collect::<Vec<_>>(), cfg.checkpoints);
    let (clients, each, _) = report.fanout.unwrap();
    assert_eq!(each.n, clients * cfg.sse_updates);
    assert!(report.memory.iter().all(|(_, app, nats)| *app > 0 && *nats > 0), "{:?}", report.memory);
    let table = report.markdown();
    assert!(table.contains("webhook → SSE event, idle"), "{table}");
    assert!(table.contains("| applied / floor |"), "{table}");
    assert!(table.contains("The correlator per batch at idle (mean): look_up "), "{table}");
}
