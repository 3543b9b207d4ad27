//! Suspending pipelines: `Context::defer`, `Completion`, `Service::start` and the
//! `Schedule` a resumed pipeline goes through (3.1.2-3.1.4 for deferred results, 3.2.3
//! and 3.3 for their order).

mod common;

use common::*;
use configurapi::{
    Completion, Context, Event, HandlerError, HandlerRegistry, Request, Schedule, Service, Started,
};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A scheduler the test drives by hand: resumed pipelines queue up here until the test
/// runs them, so nothing can run them behind its back.
struct Manual {
    jobs: Mutex<Sender<Job>>,
    suspended: AtomicUsize,
    scheduled: AtomicUsize,
}

impl Schedule for Manual {
    fn suspended(&self) {
        self.suspended.fetch_add(1, Ordering::SeqCst);
    }
    fn schedule(&self, job: Job) {
        self.scheduled.fetch_add(1, Ordering::SeqCst);
        self.jobs.lock().unwrap().send(job).unwrap();
    }
}

fn manual() -> (Arc<Manual>, Receiver<Job>) {
    let (tx, rx) = channel();
    let m = Arc::new(Manual {
        jobs: Mutex::new(tx),
        suspended: AtomicUsize::new(0),
        scheduled: AtomicUsize::new(0),
    });
    (m, rx)
}

/// A registry with `deferHandler [label]`, which appends `label` to `x-trace`, defers
/// and hands its Completion to the test.
fn deferring_registry() -> (HandlerRegistry, Receiver<Completion>) {
    let (tx, rx) = channel::<Completion>();
    let tx = Mutex::new(tx);
    let mut reg = registry();
    reg.register(
        "deferHandler",
        move |event: &mut Event, params: &[Value], ctx: &mut Context| {
            trace_handler(event, params, ctx)?;
            // What the handler did before deferring is forgotten: only apply counts.
            ctx.complete();
            tx.lock().unwrap().send(ctx.defer()).unwrap();
            Ok(())
        },
    );
    reg.register(
        "deferAndResolveHandler",
        |event: &mut Event, params: &[Value], ctx: &mut Context| {
            trace_handler(event, params, ctx)?;
            // Resolved before the handler returns.
            ctx.defer()
                .resolve(|event, ctx| trace_handler(event, &[Value::from("applied")], ctx));
            Ok(())
        },
    );
    (reg, rx)
}

fn deferring_service(yaml: &str) -> (Arc<Service>, Receiver<Completion>) {
    let (reg, rx) = deferring_registry();
    let s = Service::from_str_with_options(yaml, "config.yaml", reg, &options("test"))
        .expect("config loads");
    (Arc::new(s), rx)
}

/// Where `done` reports.
type Done = Receiver<(Event, Result<(), HandlerError>)>;

/// Starts `name`: what `start` said, the event when it finished in place, and where
/// `done` will report otherwise.
fn start(s: &Arc<Service>, name: &str, sched: &Arc<Manual>) -> (Started, Option<Event>, Done) {
    let (tx, rx) = channel();
    let resume: Arc<dyn Schedule> = sched.clone();
    let mut event = Event::new(Request::named(name));
    let started = s.start(&mut event, &resume, || {
        move |e, r| {
            tx.send((e, r)).unwrap();
        }
    });
    let finished = matches!(started, Started::Finished(_)).then_some(event);
    (started, finished, rx)
}

fn run_jobs_until<T>(jobs: &Receiver<Job>, done: &Receiver<T>) -> T {
    loop {
        if let Ok(v) = done.try_recv() {
            return v;
        }
        let job = jobs.recv_timeout(WAIT).expect("a resumed pipeline to run");
        job();
    }
}

const ORDER: &str = r#"
api:
  events:
    - name: on_before_request
      policies: [{traceHandler: [before]}]
    - name: on_success
      policies: [{traceHandler: [success]}]
    - name: on_error
      policies: [{traceHandler: [error]}]
    - name: on_after_request
      policies: [{traceHandler: [after]}]
    - name: x
      policies: [{traceHandler: [a]}, {deferHandler: [d]}, {traceHandler: [b]}]
"#;

#[test]
fn a_deferred_route_suspends_then_resumes_through_the_scheduler_in_3_3_order() {
    let (s, completions) = deferring_service(ORDER);
    let (sched, jobs) = manual();
    let (started, _, done) = start(&s, "x", &sched);
    assert!(matches!(started, Started::Suspended));
    assert_eq!(sched.suspended.load(Ordering::SeqCst), 1);
    // Nothing runs until the completion is resolved: no job, no answer.
    assert!(jobs.try_recv().is_err());
    assert!(done.try_recv().is_err());
    let c = completions.recv_timeout(WAIT).unwrap();
    // Resolved from another thread.
    std::thread::spawn(move || {
        c.resolve(|event, ctx| trace_handler(event, &[Value::from("applied")], ctx))
    })
    .join()
    .unwrap();
    let (event, result) = run_jobs_until(&jobs, &done);
    result.unwrap();
    assert_eq!(trace_of(&event), "before,a,d,applied,b,success,after");
    assert_eq!(event.response.status_code, 200);
    assert_eq!(sched.scheduled.load(Ordering::SeqCst), 1);
}

#[test]
fn resolving_before_the_handler_returns_goes_on_at_once_without_a_schedule() {
    let (s, _completions) = deferring_service(
        "api:\n  events:\n    - name: x\n      policies: [{deferAndResolveHandler: [d]}, {traceHandler: [b]}]\n",
    );
    let (sched, jobs) = manual();
    let (started, event, done) = start(&s, "x", &sched);
    // It never suspended: finished in place, done unused.
    assert!(matches!(started, Started::Finished(Ok(()))));
    assert_eq!(trace_of(&event.unwrap()), "d,applied,b");
    assert!(done.try_recv().is_err());
    assert_eq!(sched.suspended.load(Ordering::SeqCst), 0);
    assert!(jobs.try_recv().is_err());
    // The blocking form too.
    let e = run_named(&s, "x");
    assert_eq!(trace_of(&e), "d,applied,b");
}

#[test]
fn a_route_that_never_defers_finishes_inside_start_and_done_is_not_called() {
    let (s, _c) = deferring_service(ORDER.replace("{deferHandler: [d]}, ", "").as_str());
    let (sched, _jobs) = manual();
    let (started, event, done) = start(&s, "x", &sched);
    match started {
        Started::Finished(result) => {
            result.unwrap();
            assert_eq!(trace_of(&event.unwrap()), "before,a,b,success,after");
        }
        Started::Suspended => panic!("nothing deferred"),
    }
    assert!(done.try_recv().is_err());
    assert_eq!(sched.suspended.load(Ordering::SeqCst), 0);
}

#[test]
fn process_blocks_until_a_completion_resolved_on_another_thread() {
    let (s, completions) = deferring_service(ORDER);
    let resolver = std::thread::spawn(move || {
        let c = completions.recv_timeout(WAIT).unwrap();
        c.resolve(|event, _| {
            event.response.status_code = 201;
            Ok(())
        });
    });
    let e = run_named(&s, "x");
    resolver.join().unwrap();
    assert_eq!(e.response.status_code, 201);
    assert_eq!(trace_of(&e), "before,a,d,b,success,after");
}

#[test]
fn a_completion_dropped_unresolved_fails_its_policy_with_a_500() {
    let (s, completions) = deferring_service(ORDER);
    let (sched, jobs) = manual();
    let (_, _, done) = start(&s, "x", &sched);
    drop(completions.recv_timeout(WAIT).unwrap());
    let (event, result) = run_jobs_until(&jobs, &done);
    result.unwrap();
    assert_eq!(event.response.status_code, 500);
    let err = event.response.error.as_ref().expect("an ErrorResponse");
    assert_eq!(err.message, "Handler 'deferHandler' never completed");
    // The error replaced the response (and its trace header); on_error and
    // on_after_request ran after it.
    assert_eq!(trace_of(&event), "error,after");
}

#[test]
fn complete_catch_and_err_inside_apply_count_as_the_handlers_own_result() {
    let (s, completions) = deferring_service(ORDER);
    // complete(): the rest of the route is skipped, the pipeline carries on (3.1.3).
    let resolver = std::thread::spawn(move || {
        completions.recv_timeout(WAIT).unwrap().resolve(|_, ctx| {
            ctx.complete();
            Ok(())
        });
        completions.recv_timeout(WAIT).unwrap().resolve(|_, ctx| {
            ctx.catch(HandlerError::new("caught later").with_status(409));
            Ok(())
        });
        completions
            .recv_timeout(WAIT)
            .unwrap()
            .resolve(|_, _| Err(HandlerError::new("failed later").with_status(418)));
        completions
            .recv_timeout(WAIT)
            .unwrap()
            .resolve(|_, _| panic!("apply exploded"));
    });
    let e = run_named(&s, "x");
    assert_eq!(trace_of(&e), "before,a,d,success,after");
    assert_eq!(e.response.status_code, 200);

    let e = run_named(&s, "x");
    assert_eq!(trace_of(&e), "error,after");
    assert_eq!(e.response.status_code, 409);

    let e = run_named(&s, "x");
    assert_eq!(trace_of(&e), "error,after");
    assert_eq!(e.response.status_code, 418);
    assert_eq!(e.response.error.as_ref().unwrap().message, "failed later");

    let e = run_named(&s, "x");
    assert_eq!(e.response.status_code, 500);
    assert_eq!(trace_of(&e), "error,after");
    resolver.join().unwrap();
}

#[test]
fn an_error_returned_with_a_deferral_throws_at_once_and_the_completion_is_ignored() {
    let (tx, rx) = channel::<Completion>();
    let tx = Mutex::new(tx);
    let mut reg = registry();
    reg.register(
        "deferThenFail",
        move |_: &mut Event, _: &[Value], ctx: &mut Context| {
            tx.lock().unwrap().send(ctx.defer()).unwrap();
            Err(HandlerError::new("no").with_status(403))
        },
    );
    let s = Service::from_str(
        "api:\n  events:\n    - name: x\n      policies: [{deferThenFail: []}, {traceHandler: [never]}]\n",
        "c",
        reg,
    )
    .unwrap();
    let e = run_named(&s, "x");
    assert_eq!(e.response.status_code, 403);
    assert_eq!(trace_of(&e), "");
    // Resolving it later changes nothing and does not panic.
    rx.recv_timeout(WAIT)
        .unwrap()
        .resolve(|_, _| Err(HandlerError::new("late")));
}

#[test]
fn apply_may_defer_again() {
    let (s, completions) = deferring_service(ORDER);
    let (sched, jobs) = manual();
    let (_, _, done) = start(&s, "x", &sched);
    let (again_tx, again_rx) = channel::<Completion>();
    completions
        .recv_timeout(WAIT)
        .unwrap()
        .resolve(move |event, ctx| {
            trace_handler(event, &[Value::from("first")], ctx)?;
            again_tx.send(ctx.defer()).unwrap();
            Ok(())
        });
    jobs.recv_timeout(WAIT).unwrap()();
    assert!(done.try_recv().is_err(), "suspended a second time");
    again_rx
        .recv_timeout(WAIT)
        .unwrap()
        .resolve(|event, ctx| trace_handler(event, &[Value::from("second")], ctx));
    let (event, result) = run_jobs_until(&jobs, &done);
    result.unwrap();
    assert_eq!(trace_of(&event), "before,a,d,first,second,b,success,after");
    assert_eq!(sched.suspended.load(Ordering::SeqCst), 2);
    assert_eq!(sched.scheduled.load(Ordering::SeqCst), 2);
}

#[test]
fn deferrals_in_on_error_and_on_after_request_are_waited_for() {
    let (s, completions) = deferring_service(
        r#"
api:
  events:
    - name: on_error
      policies: [{deferHandler: [error]}, {traceHandler: [error2]}]
    - name: on_after_request
      policies: [{deferHandler: [after]}, {traceHandler: [after2]}]
    - name: x
      policies: [{throwErrorHandler: [bad, 400]}]
"#,
    );
    let (sched, jobs) = manual();
    let (_, _, done) = start(&s, "x", &sched);
    completions.recv_timeout(WAIT).unwrap().resolve(|event, _| {
        // on_error may replace the response (3.4.2).
        event.response.status_code = 422;
        Ok(())
    });
    jobs.recv_timeout(WAIT).unwrap()();
    assert!(done.try_recv().is_err());
    // on_after_request's failure is handled by 3.4 too (3.3.4): on_error again.
    completions
        .recv_timeout(WAIT)
        .unwrap()
        .resolve(|_, _| Err(HandlerError::new("after failed").with_status(503)));
    jobs.recv_timeout(WAIT).unwrap()();
    // on_error runs again for the on_after_request failure, and defers again.
    completions.recv_timeout(WAIT).unwrap().finish(Ok(()));
    let (event, result) = run_jobs_until(&jobs, &done);
    result.unwrap();
    assert_eq!(event.response.status_code, 503);
    // The on_after_request error replaced the response, trace header and all; on_error
    // then ran (and deferred) again.
    assert_eq!(trace_of(&event), "error,error2");
    let _ = sched;
}

#[test]
fn on_first_request_that_defers_runs_once_at_a_time_and_the_others_wait_parked() {
    let runs = Arc::new(AtomicUsize::new(0));
    let (tx, completions) = channel::<Completion>();
    let tx = Mutex::new(tx);
    let mut reg = registry();
    let counted = Arc::clone(&runs);
    reg.register(
        "firstHandler",
        move |_: &mut Event, _: &[Value], ctx: &mut Context| {
            counted.fetch_add(1, Ordering::SeqCst);
            tx.lock().unwrap().send(ctx.defer()).unwrap();
            Ok(())
        },
    );
    let s = Arc::new(
        Service::from_str(
            "api:\n  events:\n    - name: on_first_request\n      policies: [{firstHandler: []}]\n    - name: x\n      policies: [{traceHandler: [x]}]\n",
            "c",
            reg,
        )
        .unwrap(),
    );
    let (sched, jobs) = manual();
    let (first, _, done1) = start(&s, "x", &sched);
    let (second, _, done2) = start(&s, "x", &sched);
    assert!(matches!(first, Started::Suspended));
    assert!(matches!(second, Started::Suspended), "waits at the gate");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // The first attempt fails: 3.2.3, its process() re-throws; the waiter tries again.
    completions
        .recv_timeout(WAIT)
        .unwrap()
        .resolve(|_, _| Err(HandlerError::new("not yet").with_status(503)));
    let (e1, r1) = run_jobs_until(&jobs, &done1);
    assert_eq!(r1.unwrap_err().message(), "not yet");
    assert_eq!(e1.response.status_code, 503);
    assert_eq!(trace_of(&e1), "");
    // The waiter took the gate and runs on_first_request again.
    while runs.load(Ordering::SeqCst) < 2 {
        jobs.recv_timeout(WAIT).unwrap()();
    }
    let (third, _, done3) = start(&s, "x", &sched);
    assert!(matches!(third, Started::Suspended));
    completions.recv_timeout(WAIT).unwrap().finish(Ok(()));
    let (e2, r2) = run_jobs_until(&jobs, &done2);
    r2.unwrap();
    assert_eq!(trace_of(&e2), "x");
    let (e3, r3) = run_jobs_until(&jobs, &done3);
    r3.unwrap();
    assert_eq!(trace_of(&e3), "x");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "never twice at once, never after success"
    );
    // Ready now: later events do not suspend.
    assert!(matches!(
        start(&s, "x", &sched).0,
        Started::Finished(Ok(()))
    ));
}

#[test]
fn on_start_may_defer_and_is_waited_for() {
    let mut reg = registry();
    reg.register(
        "startLater",
        |_: &mut Event, _: &[Value], ctx: &mut Context| {
            let c = ctx.defer();
            std::thread::spawn(move || c.finish(Err(HandlerError::new("db down"))));
            Ok(())
        },
    );
    let err = Service::from_str(
        "api:\n  events:\n    - name: on_start\n      policies: [{startLater: []}]\n",
        "c",
        reg,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("on_start failed: db down"),
        "{err}"
    );
}

#[test]
fn a_blocking_handler_runs_on_the_blocking_pool_when_started_and_in_place_when_processed() {
    let mut reg = registry();
    reg.register_blocking(
        "whereHandler",
        |event: &mut Event, _: &[Value], _: &mut Context| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            event
                .response
                .headers
                .insert("x-thread".into(), Value::String(name));
            Ok(())
        },
    );
    let s = Arc::new(
        Service::from_str(
            "api:\n  events:\n    - name: x\n      policies: [{traceHandler: [a]}, {whereHandler: []}, {traceHandler: [b]}]\n    - name: y\n      policies: [{whereHandler: []}]\n",
            "c",
            reg,
        )
        .unwrap()
        .with_blocking_threads(2),
    );
    assert!(
        s.is_nonblocking("y", "get"),
        "it holds no worker: may start anywhere"
    );
    let (sched, jobs) = manual();
    let (started, _, done) = start(&s, "x", &sched);
    assert!(matches!(started, Started::Suspended));
    // The pool ran it, then the rest came back through the scheduler.
    let (event, result) = run_jobs_until(&jobs, &done);
    result.unwrap();
    assert_eq!(trace_of(&event), "a,b");
    let on = event.response.headers["x-thread"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(on.starts_with("blocking-"), "ran on {on}");
    assert_eq!(sched.suspended.load(Ordering::SeqCst), 1);
    assert_eq!(sched.scheduled.load(Ordering::SeqCst), 1);
    // The blocking form blocks anyway: it runs the handler where it is.
    let here = std::thread::current().name().unwrap_or("").to_string();
    let e = run_named(&s, "x");
    assert_eq!(e.response.headers["x-thread"], Value::String(here));
}

/// Routes that end every way a main stage can, with an on_error route and neither
/// on_success nor on_after_request (the pipelines `start_routed` runs without `drive`'s
/// state machine when their route is known).
const MAIN_ONLY: &str = r#"
api:
  events:
    - name: on_error
      policies: [{traceHandler: [error]}]
    - name: ok
      policies: [{traceHandler: [a]}, {traceHandler: [b]}]
    - name: completes
      policies: [{traceHandler: [a]}, stopHandler, {traceHandler: [never]}]
    - name: throws
      policies: [{traceHandler: [a]}, {throwErrorHandler: [boom, 418]}, {traceHandler: [never]}]
    - name: catches
      policies: [catchHandler, {traceHandler: [never]}]
    - name: panics
      policies: [{traceHandler: [a]}, panicHandler]
    - name: errs
      policies: [{traceHandler: [a]}, {errorResponseHandler: [409]}, {traceHandler: [b]}]
    - name: errs_and_completes
      policies: [{errorResponseHandler: [422]}, stopHandler, {traceHandler: [never]}]
    - name: resolves
      policies: [{deferAndResolveHandler: [d]}, {traceHandler: [b]}]
    - name: defers
      policies: [{traceHandler: [a]}, {deferHandler: [d]}, {traceHandler: [b]}]
    - name: blocks
      policies: [{traceHandler: [a]}, {blockingTraceHandler: [blocking]}, {traceHandler: [b]}]
"#;

#[test]
fn a_pipeline_started_on_its_known_route_ends_as_process_ends_it() {
    let (mut reg, completions) = deferring_registry();
    reg.register_blocking("blockingTraceHandler", trace_handler);
    let s = Arc::new(
        Service::from_str_with_options(MAIN_ONLY, "config.yaml", reg, &options("test"))
            .expect("config loads"),
    );
    let (sched, jobs) = manual();
    let resume: Arc<dyn Schedule> = sched.clone();
    let seen = |e: &Event, r: &Result<(), HandlerError>| {
        format!(
            "{} {:?} {:?} {} {r:?}",
            e.response.status_code,
            e.response.body,
            e.response.error,
            trace_of(e)
        )
    };
    for name in [
        "ok",
        "completes",
        "throws",
        "catches",
        "panics",
        "errs",
        "errs_and_completes",
        "resolves",
        "defers",
        "blocks",
    ] {
        // What the blocking form gives (a completion is resolved as it comes).
        let mut expected = Event::new(Request::named(name));
        let (tx, rx) = channel();
        let blocking = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let r = s.process(&mut expected);
                tx.send((expected, r)).unwrap();
            })
        };
        if name == "defers" {
            completions
                .recv_timeout(WAIT)
                .unwrap()
                .resolve(|event, ctx| trace_handler(event, &[Value::from("applied")], ctx));
        }
        let (expected, expected_result) = rx.recv_timeout(WAIT).unwrap();
        blocking.join().unwrap();

        // The same event started on the route the runner found for it.
        let mut route = s.route(name, "get");
        assert!(route.is_some());
        let (tx, done) = channel();
        let mut event = Event::new(Request::named(name));
        let started = s.start_routed(&mut event, &mut route, &resume, || {
            move |e, r| {
                tx.send((e, r)).unwrap();
            }
        });
        let (event, result) = match started {
            Started::Finished(result) => {
                // The route its main stage ran: the one it was started on.
                assert_eq!(route, s.route(name, "get"), "{name}");
                (event, result)
            }
            Started::Suspended => {
                if name == "defers" {
                    completions
                        .recv_timeout(WAIT)
                        .unwrap()
                        .resolve(|event, ctx| trace_handler(event, &[Value::from("applied")], ctx));
                }
                run_jobs_until(&jobs, &done)
            }
        };
        assert_eq!(
            seen(&event, &result),
            seen(&expected, &expected_result),
            "{name}"
        );
    }
    // The two that wait did (the others ended in place).
    assert_eq!(sched.suspended.load(Ordering::SeqCst), 2);
}
