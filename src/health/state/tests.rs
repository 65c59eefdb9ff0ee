use super::*;
use NodeState::*;

const ONE: Thresholds = Thresholds {
    success: 1,
    failure: 1,
    liveness_failure: 1,
};

fn at(state: NodeState) -> HealthMachine {
    HealthMachine {
        state,
        ..HealthMachine::new()
    }
}

fn readiness(healthz_ok: bool, traffic_ok: Option<bool>) -> Observation {
    Observation::Readiness {
        healthz: match healthz_ok {
            true => Healthz::Ok,
            false => Healthz::Failed,
        },
        traffic_ok,
    }
}

/// `/healthz` 500 listing only mapped faulty CApps.
fn partly(traffic_ok: Option<bool>) -> Observation {
    Observation::Readiness {
        healthz: Healthz::Partly,
        traffic_ok,
    }
}

/// Every (state, observation) pair with all thresholds at 1: the complete transition table.
#[test]
fn transition_table_with_thresholds_of_one() {
    let observations = [
        ("healthz ok, traffic unchecked", readiness(true, None)),
        ("healthz ok, traffic ok", readiness(true, Some(true))),
        ("healthz ok, traffic failed", readiness(true, Some(false))),
        ("healthz failed, traffic unchecked", readiness(false, None)),
        ("healthz failed, traffic ok", readiness(false, Some(true))),
        (
            "healthz failed, traffic failed",
            readiness(false, Some(false)),
        ),
        ("liveness ok", Observation::Liveness(true)),
        ("liveness failed", Observation::Liveness(false)),
        ("traffic failed (passive)", Observation::TrafficFailed),
        ("healthz partly, traffic unchecked", partly(None)),
        ("healthz partly, traffic ok", partly(Some(true))),
        ("healthz partly, traffic failed", partly(Some(false))),
    ];
    // expected[state][observation]
    #[rustfmt::skip]
    let expected: [(NodeState, [NodeState; 12]); 5] = [
        //  ok/-         ok/ok  ok/fail fail/-    fail/ok   fail/fail live         unlive passive partly/-     partly/ok    partly/fail
        (Starting, [
            Starting,    Ready, Dead,   NotReady, NotReady, Dead,     Starting,    Dead,  Dead,   Starting,    PartlyReady, Dead,
        ]),
        (Ready, [
            Ready,       Ready, Dead,   NotReady, NotReady, Dead,     Ready,       Dead,  Dead,   PartlyReady, PartlyReady, Dead,
        ]),
        (PartlyReady, [
            Ready,       Ready, Dead,   NotReady, NotReady, Dead,     PartlyReady, Dead,  Dead,   PartlyReady, PartlyReady, Dead,
        ]),
        (NotReady, [
            NotReady,    Ready, Dead,   NotReady, NotReady, Dead,     NotReady,    Dead,  Dead,   NotReady,    PartlyReady, Dead,
        ]),
        (Dead, [
            Dead,        Ready, Dead,   Dead,     Dead,     Dead,     NotReady,    Dead,  Dead,   Dead,        PartlyReady, Dead,
        ]),
    ];
    for (from, row) in expected {
        for ((label, obs), to) in observations.iter().zip(row) {
            let mut m = at(from);
            let flip = m.observe(*obs, &ONE);
            assert_eq!(m.state(), to, "{from} + {label}");
            let want = (from != to).then_some(Flip { from, to });
            assert_eq!(flip, want, "{from} + {label}: flip reported");
        }
    }
}

#[test]
fn readmission_needs_a_live_traffic_port() {
    for from in [Starting, NotReady, Dead] {
        let mut m = at(from);
        assert!(m.needs_traffic_check(), "{from}");
        // MI's shutdown trap: /healthz says 200 but the traffic port was not checked.
        m.observe(readiness(true, None), &ONE);
        assert_ne!(m.state(), Ready, "{from}: healthz alone must not readmit");
    }
    assert!(!at(Ready).needs_traffic_check());
}

#[test]
fn success_threshold_counts_consecutive_passes() {
    let t = Thresholds { success: 3, ..ONE };
    let mut m = at(NotReady);
    let pass = readiness(true, Some(true));
    assert_eq!(m.observe(pass, &t), None);
    assert_eq!(m.observe(pass, &t), None);
    // A failure in between restarts the count.
    assert_eq!(m.observe(readiness(false, Some(true)), &t), None);
    assert_eq!(m.observe(pass, &t), None);
    assert_eq!(m.observe(pass, &t), None);
    assert_eq!(
        m.observe(pass, &t),
        Some(Flip {
            from: NotReady,
            to: Ready
        })
    );
}

#[test]
fn failure_threshold_counts_consecutive_failures() {
    let t = Thresholds { failure: 3, ..ONE };
    let mut m = at(Ready);
    let fail = readiness(false, None);
    assert_eq!(m.observe(fail, &t), None);
    assert_eq!(m.observe(fail, &t), None);
    assert_eq!(
        m.observe(readiness(true, None), &t),
        None,
        "a pass resets the streak"
    );
    assert_eq!(m.observe(fail, &t), None);
    assert_eq!(m.observe(fail, &t), None);
    assert_eq!(
        m.observe(fail, &t),
        Some(Flip {
            from: Ready,
            to: NotReady
        })
    );
}

#[test]
fn starting_node_gets_a_verdict_after_failure_threshold() {
    let t = Thresholds { failure: 2, ..ONE };
    let mut m = HealthMachine::new();
    assert_eq!(m.observe(readiness(false, Some(true)), &t), None);
    assert_eq!(m.state(), Starting);
    assert_eq!(
        m.observe(readiness(false, Some(true)), &t),
        Some(Flip {
            from: Starting,
            to: NotReady
        })
    );
}

#[test]
fn liveness_threshold_counts_consecutive_failures() {
    let t = Thresholds {
        liveness_failure: 3,
        ..ONE
    };
    let mut m = at(Ready);
    assert_eq!(m.observe(Observation::Liveness(false), &t), None);
    assert_eq!(m.observe(Observation::Liveness(false), &t), None);
    assert_eq!(m.observe(Observation::Liveness(true), &t), None, "reset");
    assert_eq!(m.observe(Observation::Liveness(false), &t), None);
    assert_eq!(m.observe(Observation::Liveness(false), &t), None);
    assert_eq!(
        m.observe(Observation::Liveness(false), &t),
        Some(Flip {
            from: Ready,
            to: Dead
        })
    );
}

#[test]
fn passive_traffic_failure_evicts_at_once_whatever_the_thresholds() {
    let t = Thresholds {
        success: 5,
        failure: 5,
        liveness_failure: 5,
    };
    let mut m = at(Ready);
    assert_eq!(
        m.observe(Observation::TrafficFailed, &t),
        Some(Flip {
            from: Ready,
            to: Dead
        })
    );
    assert_eq!(
        m.observe(Observation::TrafficFailed, &t),
        None,
        "no second flip"
    );
}

#[test]
fn streaks_restart_after_a_flip() {
    let t = Thresholds {
        success: 2,
        failure: 2,
        liveness_failure: 1,
    };
    let mut m = at(NotReady);
    let pass = readiness(true, Some(true));
    m.observe(pass, &t);
    // Passive eviction between two passes: the earlier pass must not count afterwards.
    m.observe(Observation::TrafficFailed, &t);
    assert_eq!(m.state(), Dead);
    assert_eq!(
        m.observe(pass, &t),
        None,
        "one pass after the flip is not enough"
    );
    assert_eq!(
        m.observe(pass, &t),
        Some(Flip {
            from: Dead,
            to: Ready
        })
    );
}

#[test]
fn partly_ready_is_routable_and_follows_each_answer() {
    let t = Thresholds {
        success: 3,
        failure: 3,
        ..ONE
    };
    assert!(Ready.is_routable() && PartlyReady.is_routable());
    assert!(!at(PartlyReady).needs_traffic_check());
    // Readmission counts partial passes like full ones, and lands where the last one says.
    let mut m = at(NotReady);
    assert_eq!(m.observe(readiness(true, Some(true)), &t), None);
    assert_eq!(m.observe(partly(Some(true)), &t), None);
    assert_eq!(
        m.observe(partly(Some(true)), &t),
        Some(Flip {
            from: NotReady,
            to: PartlyReady
        })
    );
    // Routable: the next answer moves it at once, either way.
    let back = m.observe(readiness(true, None), &t);
    assert_eq!(back.map(|f| f.to), Some(Ready));
    assert_eq!(m.observe(partly(None), &t).map(|f| f.to), Some(PartlyReady));
    // A failure (an unmapped faulty CApp) still needs the failure threshold.
    assert_eq!(m.observe(readiness(false, None), &t), None);
    assert_eq!(m.observe(readiness(false, None), &t), None);
    assert_eq!(
        m.observe(readiness(false, None), &t).map(|f| f.to),
        Some(NotReady)
    );
}
