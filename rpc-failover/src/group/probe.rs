//! The group's background task: head probes (with head tracking), health
//! checks of quiet members, and re-tests of members out of service, so that
//! health follows the members even when no client calls.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rpc_core::{Deadline, Id, JsonRpcService, Request, Response};
use tower::ServiceExt;

use super::{duration_ns, Core, OutReason, Pick};
use crate::head::ProbeKind;

/// What a background call is for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Purpose {
    /// A head (or finality) probe.
    Head(ProbeKind),
    /// A health check of a member in service that has been quiet.
    Check,
    /// The re-test of a member out of service whose window ended.
    Retest,
}

impl<S> Core<S> {
    /// The request a health check or re-test sends to member `i`.
    fn check_request(&self, i: usize) -> Option<Request> {
        if let Some(method) = &self.policy.health.method {
            let mut req = Request::new(method.clone()).with_id(Id::from(0u64));
            if let Ok(params) = rpc_core::RawJson::from_static("[]") {
                req = req.with_params(params);
            }
            req.extensions_mut()
                .insert(Deadline::after(self.policy.health.timeout));
            return Some(req);
        }
        self.heads
            .as_ref()
            .map(|h| h.probe_request(i, ProbeKind::Head))
    }

    fn check_timeout(&self) -> Duration {
        match (&self.policy.health.method, &self.heads) {
            (None, Some(h)) => h.policy.probe_timeout,
            _ => self.policy.health.timeout,
        }
    }

    /// Members whose window ended: each is claimed for its re-test (its
    /// trial flag), so no client call and no second re-test races it.
    fn retests_due(&self, now: u64) -> u64 {
        let mut due = 0;
        for (i, h) in self.health.iter().enumerate() {
            let until = h.out_until.load(Ordering::Acquire);
            if until != 0
                && now >= until
                && h.probing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                due |= 1 << i;
            }
        }
        due
    }

    /// Members in service that answered nothing for the check interval.
    fn checks_due(&self, now: u64, probed: &mut [u64]) -> u64 {
        let interval = duration_ns(self.policy.health.interval);
        if interval == 0 || self.policy.health.method.is_none() || self.heads.is_some() {
            // With head tracking, head probes are the health checks.
            return 0;
        }
        let mut due = 0;
        for (i, h) in self.health.iter().enumerate() {
            let quiet = now.saturating_sub(h.answered_at.load(Ordering::Relaxed)) >= interval;
            let asked = now.saturating_sub(probed[i]) >= interval;
            if h.out_until.load(Ordering::Acquire) == 0 && quiet && asked {
                probed[i] = now;
                due |= 1 << i;
            }
        }
        due
    }

    /// Learns from a background call's outcome.
    fn probed(&self, i: usize, purpose: Purpose, outcome: Result<&Response, String>) {
        let retest = Pick {
            index: i,
            probe: purpose == Purpose::Retest,
            last_resort: false,
        };
        match outcome {
            Ok(_) => {
                self.answered(i);
                let h = &self.health[i];
                // A member in service is cleared of failures; one out of
                // service comes back only through its re-test (its window
                // holds, so that a flapping member is not let straight back).
                if purpose == Purpose::Retest || h.out_until.load(Ordering::Acquire) == 0 {
                    self.on_success(retest);
                }
            }
            Err(detail) => {
                let window = (purpose == Purpose::Retest).then_some(self.policy.health.recheck);
                self.on_failure(retest, OutReason::Probe, &detail, window);
            }
        }
    }
}

/// One background call to member `i`.
async fn run<S: JsonRpcService>(core: Weak<Core<S>>, i: usize, purpose: Purpose) {
    let (svc, request, timeout) = {
        let Some(core) = core.upgrade() else { return };
        let request = match purpose {
            Purpose::Head(kind) => core.heads.as_ref().map(|h| h.probe_request(i, kind)),
            Purpose::Check | Purpose::Retest => core.check_request(i),
        };
        let Some(request) = request else {
            if purpose == Purpose::Retest {
                core.health[i].probing.store(false, Ordering::Release);
            }
            return;
        };
        let timeout = match purpose {
            Purpose::Head(_) => core
                .heads
                .as_ref()
                .map_or(core.check_timeout(), |h| h.policy.probe_timeout),
            _ => core.check_timeout(),
        };
        (core.members[i].service.clone(), request, timeout)
    };
    let method = request.method_arc().clone();
    let result = tokio::time::timeout(timeout, svc.oneshot(request)).await;
    let Some(core) = core.upgrade() else { return };
    let outcome = match &result {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(format!("{method}: {e}")),
        Err(_) => Err(format!("{method}: no answer within {timeout:?}")),
    };
    if let Err(detail) = &outcome {
        tracing::debug!(backend = %core.members[i].name, ?purpose, %detail, "background probe failed");
    }
    let taught = match purpose {
        Purpose::Head(kind) => Some(kind),
        // A re-test without a health method is a head probe.
        Purpose::Retest if core.policy.health.method.is_none() => Some(ProbeKind::Head),
        _ => None,
    };
    if let (Some(kind), Ok(response)) = (taught, &outcome) {
        if let Some(heads) = &core.heads {
            heads.learn_probe(i, kind, &method, response, core.now());
        }
    }
    // Finality probes say nothing of health (many nodes cannot answer them).
    if !matches!(
        purpose,
        Purpose::Head(ProbeKind::Finalized | ProbeKind::Safe)
    ) {
        core.probed(i, purpose, outcome);
    }
}

impl<S: JsonRpcService> Core<S> {
    /// Starts the background task (once; only when there is something to
    /// probe — head tracking or a health check — and inside a Tokio
    /// runtime). It holds the group weakly and ends with it.
    pub(crate) fn ensure_prober(self: &Arc<Self>) {
        // Called on every call: a plain load first, so the common case (already
        // started) writes nothing shared.
        if !self.rechecks()
            || self.prober.load(Ordering::Relaxed)
            || self.prober.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.prober.store(false, Ordering::Release);
            return;
        };
        let weak = Arc::downgrade(self);
        let wanted = self.heads.as_ref().map(|h| h.wanted.clone());
        let mut probed = vec![0u64; self.members.len()];
        runtime.spawn(async move {
            loop {
                let tick = {
                    let Some(core) = weak.upgrade() else { return };
                    let now = core.now();
                    let spawn = |i: usize, purpose: Purpose| {
                        tokio::spawn(run(Arc::downgrade(&core), i, purpose));
                    };
                    let retests = core.retests_due(now);
                    let checks = core.checks_due(now, &mut probed);
                    let (due, finality) = match &core.heads {
                        Some(heads) => (heads.due(now), heads.finality_due(now)),
                        None => (0, 0),
                    };
                    for i in 0..core.members.len() {
                        let bit = 1u64 << i;
                        if retests & bit != 0 {
                            tracing::trace!(backend = %core.members[i].name, "re-testing");
                            spawn(i, Purpose::Retest);
                        } else if due & bit != 0 {
                            tracing::trace!(backend = %core.members[i].name, "probing the head");
                            spawn(i, Purpose::Head(ProbeKind::Head));
                        } else if checks & bit != 0 {
                            spawn(i, Purpose::Check);
                        }
                        if finality & bit != 0 {
                            for kind in [ProbeKind::Finalized, ProbeKind::Safe] {
                                spawn(i, Purpose::Head(kind));
                            }
                        }
                    }
                    let mut tick = core.policy.health.recheck / 4;
                    if let Some(heads) = &core.heads {
                        heads.tick(now);
                        tick = tick.min(heads.policy.probe_interval / 4);
                    }
                    if core.policy.health.method.is_some() && !core.policy.health.interval.is_zero()
                    {
                        tick = tick.min(core.policy.health.interval / 4);
                    }
                    tick.max(Duration::from_millis(5))
                };
                // A call waiting for a head wakes the prober early.
                match &wanted {
                    Some(wanted) => tokio::select! {
                        () = tokio::time::sleep(tick) => {}
                        () = wanted.notified() => {}
                    },
                    None => tokio::time::sleep(tick).await,
                }
            }
        });
    }
}
