//! Polling real Modbus servers end to end: the simulator over Modbus TCP and over a serial line
//! (a socat pty pair, Modbus RTU), through the real pipeline into the spool.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{free_port, gd16_bus, gd16_devices, pty_pair, rtu_line, Gateway};
use plantgate::record::{AlarmLevel, Quality, Value};
use plantgate::sim::{self, server::SimBus, Behaviour, Controller, GD16_POINTS};

/// The GD-16 profile (a gas channel, its status, mains failure) plus, on gas-1, a 32-bit float
/// and a point the controller does not have (its reads answer with exception 0x02).
fn devices(bus: &str) -> String {
    format!(
        r#"
[[device]]
name = "gas-1"
bus = "{bus}"
unit = 1
poll_ms = 100
profile = "gd16"
[[device.point]]
name = "flow"
table = "holding"
address = 300
type = "f32"
word_order = "little"
[[device.point]]
name = "missing"
table = "holding"
address = 900
type = "u16"

[[device]]
name = "gas-dead"
bus = "{bus}"
unit = 7
poll_ms = 300
profile = "gd16"
"#
    )
}

async fn exercise(text: String, c: std::sync::Arc<Controller>) {
    let mut gw = Gateway::start(&text).await;

    // 1. Values decode: 12.3 %LEL from raw 123, an f32 in little word order, the bool.
    c.set_concentration(1, 123);
    {
        let mut r = c.registers();
        // 12.5f32 = 0x4148_0000, little word order: low word first
        r.holding.insert(300, 0x0000);
        r.holding.insert(301, 0x4148);
    }
    gw.wait_until(Duration::from_secs(10), "decoded values", |s| {
        s.latest("gas-1", "ch01.gas")
            .and_then(|r| r.sample.value)
            .is_some_and(|v| (v.as_f64() - 12.3).abs() < 1e-9)
    })
    .await;
    {
        let seen = gw.seen();
        assert_eq!(
            seen.latest("gas-1", "flow").unwrap().sample.value,
            Some(Value::Float(12.5))
        );
        assert_eq!(
            seen.latest("gas-1", "mains_failure").unwrap().sample.value,
            Some(Value::Bool(false))
        );
        assert_eq!(
            seen.latest("gas-1", "ch01.status").unwrap().sample.value,
            Some(Value::Int(0))
        );

        // 2. The exception and the absent unit are qualities, never gaps.
        let missing = seen.latest("gas-1", "missing").unwrap();
        assert_eq!(missing.sample.quality, Quality::Exception(2));
        assert_eq!(missing.sample.value, None);
    }
    gw.wait_until(Duration::from_secs(10), "a timed-out poll of unit 7", |s| {
        s.latest("gas-dead", "ch02.status").is_some()
    })
    .await;
    {
        let seen = gw.seen();
        for r in seen.readings.iter().filter(|r| &*r.device == "gas-dead") {
            assert_eq!(r.sample.quality, Quality::Timeout, "{r:?}");
            assert_eq!(r.sample.value, None);
        }
        assert_eq!(
            seen.readings
                .iter()
                .filter(|r| &*r.device == "gas-dead")
                .count()
                % GD16_POINTS,
            0,
            "every point of every poll"
        );

        // 3. Alarm transitions: the start-up state, then normal → low → high → normal, and a fault.
    }
    c.set_concentration(1, 250); // above the low threshold (200)
    gw.wait_until(Duration::from_secs(10), "low alarm", |s| {
        s.alarms.iter().any(|a| a.level == AlarmLevel::Low)
    })
    .await;
    c.set_concentration(1, 450);
    gw.wait_until(Duration::from_secs(10), "high alarm", |s| {
        s.alarms.iter().any(|a| a.level == AlarmLevel::High)
    })
    .await;
    c.set_concentration(1, 30);
    c.set_fault(2);
    gw.wait_until(Duration::from_secs(10), "clear and fault", |s| {
        s.alarms
            .iter()
            .any(|a| &*a.sample.point == "ch02.status" && a.level == AlarmLevel::Fault)
            && s.alarms
                .iter()
                .any(|a| a.prev == AlarmLevel::High && a.level == AlarmLevel::Normal)
    })
    .await;
    {
        let seen = gw.seen();
        let ch1: Vec<(AlarmLevel, AlarmLevel)> = seen
            .alarms
            .iter()
            .filter(|a| &*a.sample.point == "ch01.status")
            .map(|a| (a.prev, a.level))
            .collect();
        assert_eq!(
            ch1,
            [
                (AlarmLevel::Unknown, AlarmLevel::Normal),
                (AlarmLevel::Normal, AlarmLevel::Low),
                (AlarmLevel::Low, AlarmLevel::High),
                (AlarmLevel::High, AlarmLevel::Normal)
            ]
        );
        // the dead unit's alarm points never produced a level (a timeout is not a level); the only
        // event it may raise is going offline
        for a in seen.alarms.iter().filter(|a| &*a.device == "gas-dead") {
            assert_eq!(
                (&*a.sample.point, a.level),
                ("_device", AlarmLevel::Fault),
                "{a:?}"
            );
        }

        // 4. Sequence numbers increase in capture order and are unique across readings and
        //    alarms, which share one sequence.
        for (what, seqs) in [
            (
                "readings",
                seen.readings.iter().map(|r| r.seq).collect::<Vec<_>>(),
            ),
            ("alarms", seen.alarms.iter().map(|a| a.seq).collect()),
        ] {
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{what} numbers do not increase in capture order"
            );
        }
        let mut seqs: Vec<u64> = seen
            .readings
            .iter()
            .map(|r| r.seq)
            .chain(seen.alarms.iter().map(|a| a.seq))
            .collect();
        let n = seqs.len();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), n, "duplicate sequence numbers");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_the_simulator_over_modbus_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::gas16();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sim = tokio::spawn(sim::server::serve_tcp(
        listener,
        SimBus::new([(1, c.clone())]),
    ));
    let line = format!("tcp = {{ address = \"{addr}\" }}");
    let text = gd16_bus(dir.path(), "tcp", &line, 200) + &devices("tcp");
    exercise(text, c).await;
    sim.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_the_simulator_over_an_rtu_serial_line() {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path());
    let c = Controller::gas16();
    let sim_path = pty.sim.to_string_lossy().into_owned();
    let bus = SimBus::new([(1, c.clone())]);
    let sim = tokio::spawn(async move { sim::server::serve_rtu(&sim_path, 19_200, bus).await });
    let text = gd16_bus(dir.path(), "rs485", &rtu_line(&pty.gw), 200) + &devices("rs485");
    exercise(text, c).await;
    sim.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_answering_exceptions_gives_exception_quality() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::gas16();
    c.set_behaviour(Behaviour::Exception(4)); // server device failure
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sim = tokio::spawn(sim::server::serve_tcp(
        listener,
        SimBus::new([(1, c.clone())]),
    ));
    let line = format!("tcp = {{ address = \"{addr}\" }}");
    let mut gw =
        Gateway::start(&(gd16_bus(dir.path(), "tcp", &line, 500) + &gd16_devices("tcp", [1], 100)))
            .await;
    gw.wait_until(Duration::from_secs(10), "a poll", |s| {
        s.readings.len() >= GD16_POINTS
    })
    .await;
    {
        let seen = gw.seen();
        assert!(seen
            .readings
            .iter()
            .all(|r| r.sample.quality == Quality::Exception(4) && r.sample.value.is_none()));
        assert!(seen.alarms.is_empty(), "an exception is not an alarm level");
    }
    // the controller recovers: values come back good on the same connection
    c.set_behaviour(Behaviour::Normal);
    gw.wait_until(Duration::from_secs(10), "recovery", |s| {
        s.latest("gas-1", "ch01.gas")
            .is_some_and(|r| r.sample.quality == Quality::Good)
    })
    .await;
    gw.shutdown().await;
    sim.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_points_are_read_at_their_own_faster_cadence() {
    let dir = tempfile::tempdir().unwrap();
    let (port, c) = common::simulators(1).await;
    let line = format!("tcp = {{ address = \"127.0.0.1:{port}\" }}");
    // values once a second, alarm points every 100 ms
    let devices = gd16_devices("tcp", [1], 1000)
        .replace("poll_ms = 1000\n", "poll_ms = 1000\nalarm_poll_ms = 100\n");
    let mut gw = Gateway::start(&(gd16_bus(dir.path(), "tcp", &line, 500) + &devices)).await;
    gw.wait_until(Duration::from_secs(10), "a first poll", |s| {
        s.latest("gas-1", "ch01.gas").is_some()
    })
    .await;
    let count =
        |s: &common::Seen, pt: &str| s.readings.iter().filter(|r| &*r.sample.point == pt).count();
    let (gas0, status0) = {
        let s = gw.seen();
        (count(&s, "ch01.gas"), count(&s, "ch01.status"))
    };
    gw.gather_for(Duration::from_millis(3000), "three seconds of polls")
        .await;
    let (gas, status) = {
        let s = gw.seen();
        (
            count(&s, "ch01.gas") - gas0,
            count(&s, "ch01.status") - status0,
        )
    };
    // 3 s: about 3 full polls, and about 30 alarm-point polls (each full poll reads them too)
    assert!(
        (2..=4).contains(&gas),
        "{gas} value polls in 3 s at 1000 ms"
    );
    assert!(status >= 20, "{status} alarm-point polls in 3 s at 100 ms");
    // An alarm is seen at the alarm cadence, not the value cadence: raised just after a full
    // poll, it must not wait about a second for the next one.
    let polls = count(&gw.seen(), "ch01.gas");
    gw.wait_until(Duration::from_secs(5), "the next full poll", |s| {
        count(s, "ch01.gas") > polls
    })
    .await;
    let before = gw.seen().alarms.len();
    let t = std::time::Instant::now();
    c[0].set_concentration(3, 450);
    gw.wait_until(Duration::from_secs(5), "the high alarm", |s| {
        s.alarms[before..]
            .iter()
            .any(|a| &*a.sample.point == "ch03.status" && a.level == AlarmLevel::High)
    })
    .await;
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "the alarm took {:?}: it waited for the value poll",
        t.elapsed()
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_f32_register_holding_nan_is_bad_value_never_good() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::gas16();
    {
        // 0xFFFF 0xFFFF: a NaN, what many transmitters send on a sensor fault
        let mut r = c.registers();
        r.holding.insert(310, 0xFFFF);
        r.holding.insert(311, 0xFFFF);
        r.holding.insert(312, 7);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sim = tokio::spawn(sim::server::serve_tcp(
        listener,
        SimBus::new([(1, c.clone())]),
    ));
    let text = format!(
        "[gateway]\nid = \"t\"\ndata_dir = \"{}\"\n[[bus]]\nname = \"tcp\"\ntcp = {{ address = \"{addr}\" }}\n\
         [[device]]\nname = \"g\"\nbus = \"tcp\"\nunit = 1\npoll_ms = 100\n\
         [[device.point]]\nname = \"flow\"\ntable = \"holding\"\naddress = 310\ntype = \"f32\"\nword_order = \"big\"\n\
         [[device.point]]\nname = \"level\"\ntable = \"holding\"\naddress = 312\ntype = \"u16\"\n",
        dir.path().display()
    );
    let mut gw = Gateway::start(&text).await;
    gw.wait_until(Duration::from_secs(10), "three polls", |s| {
        s.readings
            .iter()
            .filter(|r| &*r.sample.point == "flow")
            .count()
            >= 3
    })
    .await;
    {
        let seen = gw.seen();
        for r in seen.readings.iter().filter(|r| &*r.sample.point == "flow") {
            assert_eq!(
                (r.sample.quality, r.sample.value),
                (Quality::BadValue, None),
                "{r:?}"
            );
        }
        // the other point of the same read is good: only the value that is no number is refused
        let level = seen.latest("g", "level").unwrap();
        assert_eq!(
            (level.sample.quality, level.sample.value),
            (Quality::Good, Some(Value::Int(7)))
        );
    }
    // and the point recovers when the register holds a number again (12.5 = 0x4148_0000)
    {
        let mut r = c.registers();
        r.holding.insert(310, 0x4148);
        r.holding.insert(311, 0x0000);
    }
    gw.wait_until(Duration::from_secs(10), "a good value again", |s| {
        s.latest("g", "flow")
            .is_some_and(|r| r.sample.value == Some(Value::Float(12.5)))
    })
    .await;
    assert_eq!(
        gw.seen().latest("g", "flow").unwrap().sample.quality,
        Quality::Good
    );
    gw.shutdown().await;
    sim.abort();
}

/// A line that is down (nothing listens at the device's address) is tried once per poll, not
/// once per block: each attempt waits out the line's reopen backoff (up to 30 s), and four
/// blocks per poll would leave the device without a finished poll for two minutes, long enough
/// for readiness and the watchdog to give up on a gateway whose only fault is a cable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_down_costs_one_reopen_wait_per_poll_not_one_per_block() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(); // nothing listens there
    let mut text = format!(
        "[gateway]\nid = \"t\"\ndata_dir = \"{}\"\n[[bus]]\nname = \"tcp\"\ntcp = {{ address = \"127.0.0.1:{port}\" }}\n\
         [[device]]\nname = \"g\"\nbus = \"tcp\"\nunit = 1\npoll_ms = 100\n",
        dir.path().display()
    );
    // four blocks: addresses too far apart to be read in one request
    for a in [0, 200, 400, 600] {
        text.push_str(&format!(
            "[[device.point]]\nname = \"p{a}\"\ntable = \"holding\"\naddress = {a}\ntype = \"u16\"\n"
        ));
    }
    let mut gw = Gateway::start(&text).await;
    // Reopen waits of 1, 2 and 4 s: three polls finish within about 3 s, and a fourth by 7 s.
    // One wait per block would finish the first poll only after 1 + 2 + 4 s.
    gw.wait_until(Duration::from_secs(6), "three finished polls", |s| {
        s.readings
            .iter()
            .filter(|r| &*r.sample.point == "p600")
            .count()
            >= 3
    })
    .await;
    {
        let seen = gw.seen();
        assert!(
            seen.readings
                .iter()
                .all(|r| matches!(r.sample.quality, Quality::Disconnected | Quality::Offline)),
            "every point of a poll on a dead line is disconnected (or offline, once the breaker says so)"
        );
    }
    gw.shutdown().await;
}
