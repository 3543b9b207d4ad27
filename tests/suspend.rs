//! Waiting holds no thread (issue #13 item 2): handlers that defer suspend their
//! pipeline, and a thousand of them wait at once on the default worker pool, over real
//! sockets. The tests of this file run one at a time (timing figures are reported).

mod support;

use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use configurapi_runner_ws::configurapi::{Completion, Context, Event, HandlerError, Payload};
use configurapi_runner_ws::runner::RunnerOptions;
use configurapi_runner_ws::ServerConfig;
use serde_json::{json, Value};
use support::*;

const APP: &str = r#"
api:
  events:
    - name: wait
      policies:
        - delayHandler: [200]
        - echoHandler
    - name: echo
      policies:
        - echoHandler
"#;

/// One test at a time: thread counts are per process.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The soft limit on open files of this process (`Max open files` in /proc/self/limits).
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// This process's thread count.
fn threads() -> usize {
    threads_of("/proc/self/status")
}

/// A runner with the default server settings (workers = cores) and default options.
fn default_runner(yaml: &str) -> TestServer {
    start_runner(
        yaml,
        |_| {},
        ServerConfig::default(),
        RunnerOptions::default(),
    )
}

/// Sends every message on its connection (all before any answer is read), lets
/// `waiting` check the server while they wait (it gets the thread count first taken),
/// then reads every answer. Returns each request's time from its send to its answer
/// and the thread count taken at the first answer and after the last.
fn wait_all(
    conns: &mut [Ws],
    per_conn: usize,
    threads: &dyn Fn() -> usize,
    waiting: &dyn Fn(usize),
) -> (Vec<Duration>, [usize; 2]) {
    let total = conns.len() * per_conn;
    let mut sent = Vec::with_capacity(conns.len());
    for (c, ws) in conns.iter_mut().enumerate() {
        // A connection's messages go out in one write: pipelined.
        let mut bytes = Vec::new();
        for i in 0..per_conn {
            let msg = json!({"name": "wait", "payload": i, "headers": {"message-id": format!("{c}-{i}")}});
            bytes.extend(client_frame(0x81, msg.to_string().as_bytes()));
        }
        // The clock starts before the write: the server may start its 200 ms before this
        // thread runs again after the write returns.
        sent.push(Instant::now());
        ws.s.write_all(&bytes).unwrap();
    }
    waiting(total);
    let mut took = Vec::with_capacity(total);
    let mut at_first = None;
    for (c, ws) in conns.iter_mut().enumerate() {
        let mut seen = vec![false; per_conn];
        for _ in 0..per_conn {
            let reply = ws.recv();
            took.push(sent[c].elapsed());
            // Every request has reached the server by its first answer.
            at_first.get_or_insert_with(threads);
            assert_eq!(reply["statusCode"], 200, "{reply}");
            let i = reply["body"].as_u64().expect("the payload echoed") as usize;
            assert_eq!(reply["headers"]["message-id"], format!("{c}-{i}"));
            assert!(!seen[i], "answered twice: {reply}");
            seen[i] = true;
        }
    }
    (took, [at_first.unwrap_or(0), threads()])
}

fn report(what: &str, took: &mut [Duration]) {
    took.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "{what}: {} requests, answer after min {:.0} ms, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        took.len(),
        ms(took[0]),
        ms(took[took.len() / 2]),
        ms(took[took.len() * 99 / 100]),
        ms(took[took.len() - 1]),
    );
}

/// Upgrades a connection to `addr` on `/`.
fn connect_to(addr: &str) -> Ws {
    ws_client(addr.parse().expect("a socket address"))
}

/// Opens `n` connections and checks the route works (which also starts the timer
/// thread, so it is counted in a "before" figure).
fn open(addr: &str, n: usize) -> Vec<Ws> {
    let mut conns: Vec<Ws> = (0..n).map(|_| connect_to(addr)).collect();
    let warm = conns[0].request(&json!({"name": "wait", "payload": "warm"}));
    assert_eq!(warm["body"], "warm");
    conns
}

/// The runner binary with default flags, serving `yaml` (on a free port, no
/// management listener).
struct Binary {
    bin: Bin,
    addr: String,
    _dir: Scratch,
}

impl Binary {
    fn start(yaml: &str) -> Binary {
        let dir = Scratch::new("suspend-test");
        let config = dir.write("config.yaml", yaml);
        let (bin, addr) = Bin::start(&[
            "--config",
            config.to_str().unwrap(),
            "--management-port",
            "0",
        ]);
        Binary {
            bin,
            addr: addr.to_string(),
            _dir: dir,
        }
    }

    /// The runner process's thread count.
    fn threads(&self) -> usize {
        self.bin.threads()
    }
}

#[test]
fn a_thousand_connections_wait_200_ms_each_at_once_in_the_runner_binary_with_default_flags() {
    let _serial = serial();
    // 1,000 client sockets here and 1,000 in the runner, which inherits the limit: the
    // test needs that many descriptors rather than quietly testing fewer requests.
    let limit = open_files_limit();
    assert!(
        limit >= 1100,
        "this test opens 1,000 connections: raise the open-files limit (ulimit -n) from {limit} to at least 1100"
    );
    let bin = Binary::start(APP);
    let mut conns = open(&bin.addr, 1000);
    let before = bin.threads();
    let (mut took, [at_first, after]) = wait_all(&mut conns, 1, &|| bin.threads(), &|_| {});
    report("binary, 1000 connections x 1", &mut took);
    eprintln!("runner threads: {before} before, {at_first} at the first answer, {after} after");
    assert!(
        at_first <= before,
        "threads grew from {before} to {at_first}"
    );
    assert!(after <= before, "threads grew from {before} to {after}");
    let max = *took.last().unwrap();
    // The waits overlap: the default pool is one worker per core, and with a worker held
    // per wait the last answer would come after 1000 / cores x 200 ms. The bar is half
    // of that, far above the ~200 ms seen (the issue's 600 ms is a benchmark figure, not
    // a pass/fail line a loaded machine could cross).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let held_by_workers = Duration::from_millis(200) * 1000 / cores;
    assert!(
        max < held_by_workers / 2,
        "slowest answer {max:?}: the waits did not overlap ({cores} cores)"
    );
    assert!(
        took[0] >= Duration::from_millis(200),
        "answered before the delay"
    );
}

#[test]
fn fifty_connections_with_twenty_pipelined_waits_are_all_suspended_at_once() {
    let _serial = serial();
    let srv = default_runner(APP);
    let mut conns = open(&srv.addr.to_string(), 50);
    let (mut took, _) = wait_all(&mut conns, 20, &threads, &|total| {
        // Every request waits at once: none has been answered yet.
        let s = wait_stats(&srv, "all requests suspended", |s| {
            s.waiting as usize == total || s.messages_out > 1
        });
        assert_eq!(
            s.waiting as usize, total,
            "all waiting before an answer: {s:?}"
        );
    });
    // All 1,000 were waiting at once (above): that is the behaviour; the times are
    // reported for the eye, not asserted.
    report("in process, 50 connections x 20 pipelined", &mut took);
}

#[test]
fn a_rust_handler_resolves_its_completion_from_its_own_thread() {
    let _serial = serial();
    let yaml = r#"
api:
  events:
    - name: later
      policies:
        - laterHandler
        - echoHandler
"#;
    let srv = start_runner(
        yaml,
        |r| {
            r.register(
                "laterHandler",
                |event: &mut Event, _: &[Value], ctx: &mut Context| {
                    let completion = ctx.defer();
                    let n = match event.payload() {
                        Payload::Json(v) => v.as_u64().unwrap_or(0),
                        _ => 0,
                    };
                    std::thread::spawn(move || {
                        completion.resolve(move |event, ctx| {
                            if n == 13 {
                                return Err(HandlerError::new("unlucky").with_status(409));
                            }
                            event.response.headers.insert("x-later".into(), json!(n));
                            if n == 7 {
                                // Skip the echo: the body stays empty.
                                ctx.complete();
                            }
                            Ok(())
                        })
                    });
                    Ok(())
                },
            );
        },
        test_config(),
        RunnerOptions::default(),
    );
    let mut ws = connect(&srv);
    let r = ws.request(&json!({"name": "later", "payload": 1, "headers": {"message-id": "a"}}));
    assert_eq!(
        r,
        json!({"statusCode": 200, "headers": {"x-later": 1, "message-id": "a"}, "body": 1})
    );
    let r = ws.request(&json!({"name": "later", "payload": 7}));
    assert_eq!(
        r,
        json!({"statusCode": 200, "headers": {"x-later": 7}, "body": ""})
    );
    let r = ws.request(&json!({"name": "later", "payload": 13}));
    assert_eq!(r["statusCode"], 409);
    assert_eq!(r["body"]["message"], "unlucky");
}

#[test]
fn a_completion_dropped_unresolved_answers_500_and_the_runner_goes_on() {
    let _serial = serial();
    let yaml = r#"
api:
  events:
    - name: lost
      policies:
        - loseHandler
    - name: echo
      policies:
        - echoHandler
"#;
    let srv = start_runner(
        yaml,
        |r| {
            r.register(
                "loseHandler",
                |_: &mut Event, _: &[Value], ctx: &mut Context| {
                    let completion = ctx.defer();
                    std::thread::spawn(move || drop(completion));
                    Ok(())
                },
            );
        },
        test_config(),
        RunnerOptions::default(),
    );
    let mut ws = connect(&srv);
    let r = ws.request(&json!({"name": "lost", "headers": {"message-id": "m"}}));
    assert_eq!(r["statusCode"], 500, "{r}");
    assert_eq!(
        r["body"]["message"],
        "Handler 'loseHandler' never completed"
    );
    assert_eq!(r["headers"]["message-id"], "m");
    assert_eq!(
        ws.request(&json!({"name": "echo", "payload": "ok"}))["body"],
        "ok"
    );
    assert_eq!(srv.handle.stats().unwrap().waiting, 0);
}

#[test]
fn on_connect_that_waits_accepts_later_and_on_disconnect_that_waits_still_runs() {
    let _serial = serial();
    let yaml = r#"
api:
  events:
    - name: on_connect
      policies:
        - delayHandler: [50]
        - identityHandler: ["$(user)"]
        - statusFromParamsHandler
    - name: on_disconnect
      policies:
        - delayHandler: [50]
        - recordHandler: [disconnect]
    - name: whoami
      policies: [whoamiHandler]
"#;
    let (rec, seen) = recorder();
    let srv = start_runner(
        yaml,
        |r| {
            r.register("recordHandler", rec);
        },
        test_config(),
        RunnerOptions::default(),
    );
    let (mut ws, _) = connect_with(&srv, "/?user=ann", "");
    assert_eq!(ws.request(&json!({"name": "whoami"}))["body"], "ann");
    ws.close();
    let got = seen.recv_timeout(DEADLINE).expect("on_disconnect ran");
    assert_eq!(got["tag"], "disconnect");
    // Rejected after its wait: 1008, and no on_disconnect.
    let (mut ws, _) = connect_with(&srv, "/?status=401", "");
    ws.expect_close(1008, Some("Policy Violation"));
    wait_stats(&srv, "nothing waiting", |s| s.waiting == 0 && s.open == 0);
    assert!(seen.try_recv().is_err());
}

#[test]
fn at_the_waiting_cap_reading_pauses_until_one_resumes_and_every_request_is_answered() {
    let _serial = serial();
    let yaml = r#"
api:
  events:
    - name: held
      policies:
        - holdHandler
        - echoHandler
"#;
    let (tx, held) = std::sync::mpsc::channel::<Completion>();
    let tx = Mutex::new(tx);
    let srv = start_runner(
        yaml,
        move |r| {
            r.register(
                "holdHandler",
                move |_: &mut Event, _: &[Value], ctx: &mut Context| {
                    tx.lock().unwrap().send(ctx.defer()).unwrap();
                    Ok(())
                },
            );
        },
        ServerConfig {
            max_waiting: 4,
            ..test_config()
        },
        RunnerOptions::default(),
    );
    let mut ws = connect(&srv);
    let batch = |from: u64, to: u64| {
        let mut bytes = Vec::new();
        for i in from..to {
            let msg = json!({"name": "held", "payload": i});
            bytes.extend(client_frame(0x81, msg.to_string().as_bytes()));
        }
        bytes
    };
    ws.s.write_all(&batch(0, 4)).unwrap();
    wait_stats(&srv, "four waiting", |s| s.waiting == 4);
    ws.s.write_all(&batch(4, 12)).unwrap();
    // The stats command reaches the reactor after the bytes (loopback: they are in the
    // socket before the write returns), so the reactor has seen them and not read them.
    let s = srv.handle.stats().unwrap();
    assert_eq!(s.messages_in, 4, "read past the cap: {s:?}");
    // One resumes: reading goes on, and the rest is read and waits in turn.
    let mut completions: Vec<Completion> = (0..4)
        .map(|_| held.recv_timeout(DEADLINE).unwrap())
        .collect();
    completions.pop().unwrap().finish(Ok(()));
    let mut got = vec![ws.recv()["body"].as_u64().unwrap()];
    wait_stats(&srv, "the rest read", |s| s.messages_in == 12);
    completions.extend((0..8).map(|_| held.recv_timeout(DEADLINE).unwrap()));
    for c in completions {
        c.finish(Ok(()));
    }
    for _ in 0..11 {
        got.push(ws.recv()["body"].as_u64().unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (0..12).collect::<Vec<u64>>());
    wait_stats(&srv, "nothing waiting", |s| s.waiting == 0);
}

#[test]
fn a_push_waiting_for_room_on_a_slow_reader_holds_no_thread_and_nothing_is_dropped() {
    let _serial = serial();
    const COUNT: usize = 300;
    const BODY: usize = 32 << 10;
    let yaml = r#"
import: [configurapi-handler-http]
api:
  events:
    - name: push
      policies:
        - pushHandler: ["$($event.payload)"]
        - setResponseHandler: [200, done]
"#;
    let srv = start_runner(
        yaml,
        |_| {},
        ServerConfig {
            workers: 1,
            high_water: 64 << 10,
            low_water: 16 << 10,
            ..test_config()
        },
        RunnerOptions::default(),
    );
    let mut ws = connect(&srv);
    let mut w = ws.s.try_clone().unwrap();
    // Written from another thread: the server stops reading while it holds too much
    // for this client, and this client reads nothing at first.
    let writer = std::thread::spawn(move || {
        for i in 0..COUNT {
            let msg = json!({"name": "push", "payload": format!("{i:x<BODY$}")});
            w.write_all(&client_frame(0x81, msg.to_string().as_bytes()))
                .unwrap();
        }
    });
    // With a thread blocked per waiting push this would stay 0.
    wait_stats(&srv, "a push waiting for room", |s| s.waiting >= 1);
    // Pushes of different requests may pass each other (one that waited for room and
    // a later one that found room); each arrives once, whole.
    let mut seen = vec![false; COUNT];
    let (mut pushes, mut replies) = (0, 0);
    while pushes < COUNT || replies < COUNT {
        let v = ws.recv();
        if v["headers"]["x-push"] == "1" {
            let body = v["body"].as_str().unwrap();
            assert_eq!(body.len(), BODY);
            let i: usize = body.trim_end_matches('x').parse().unwrap();
            assert!(!seen[i], "push {i} twice");
            seen[i] = true;
            pushes += 1;
        } else {
            assert_eq!(v["body"], "done", "{}", &v.to_string()[..80]);
            replies += 1;
        }
    }
    writer.join().unwrap();
    wait_stats(&srv, "nothing waiting", |s| s.waiting == 0);
}

#[test]
fn blocking_handlers_wait_on_their_own_pool_and_never_starve_the_workers() {
    let _serial = serial();
    let yaml = r#"
api:
  events:
    - name: io
      policies:
        - ioHandler
        - echoHandler
    - name: work
      policies:
        - cpuHandler
"#;
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let gate_rx = std::sync::Arc::new(Mutex::new(gate_rx));
    let srv = start_runner(
        yaml,
        move |r| {
            // Blocks its thread until the test opens the gate, as a synchronous
            // database call would.
            r.register_blocking(
                "ioHandler",
                move |_: &mut Event, _: &[Value], _: &mut Context| {
                    gate_rx.lock().unwrap().recv_timeout(DEADLINE).unwrap();
                    Ok(())
                },
            );
            // An ordinary handler: runs on the (single) worker.
            r.register(
                "cpuHandler",
                |event: &mut Event, _: &[Value], _: &mut Context| {
                    event.response.body = "computed".into();
                    Ok(())
                },
            );
        },
        ServerConfig {
            workers: 1,
            ..test_config()
        },
        RunnerOptions::default(),
    );
    let mut ws = connect(&srv);
    for i in 0..4 {
        ws.send(&json!({"name": "io", "payload": i}));
    }
    wait_stats(&srv, "four blocked calls", |s| s.waiting == 4);
    // The worker is free: had the blocked calls run on it, this would never answer.
    assert_eq!(ws.request(&json!({"name": "work"}))["body"], "computed");
    for _ in 0..4 {
        gate_tx.send(()).unwrap();
    }
    let mut got: Vec<u64> = (0..4)
        .map(|_| ws.recv()["body"].as_u64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2, 3]);
}

#[test]
fn a_stream_answered_after_a_wait_is_sent_as_chunk_frames_with_the_message_id() {
    let _serial = serial();
    let yaml = r#"
api:
  events:
    - name: later
      policies:
        - delayHandler: [20]
        - streamHandler: [3, 4]
"#;
    let srv = simple_runner(yaml);
    let mut ws = connect(&srv);
    ws.send(&json!({"name": "later", "headers": {"message-id": "s"}}));
    let mut ids = Vec::new();
    for i in 0..4 {
        let f = ws.recv();
        let kind = if i < 3 { "chunk" } else { "done" };
        assert_eq!(f["headers"]["x-stream"], kind, "{f}");
        assert_eq!(f["headers"]["message-id"], "s", "{f}");
        assert_eq!(f["body"], if i < 3 { "xxxx" } else { "" }, "{f}");
        ids.push(f["headers"]["x-stream-id"].clone());
    }
    assert!(ids.iter().all(|id| *id == ids[0]));
}
