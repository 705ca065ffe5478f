#!/usr/bin/env bash
# Shows that the simulations catch the bugs they exist for: each is planted, one at a time, in a
# throwaway worktree of HEAD, and its simulation must fail on it (it prints the seed of the
# first failure). The reconciliation simulation (core/tests/reconcile_simulation.rs):
#
# 1. one session's failing decision read ends the run without setting the session aside
#    (every later run stops at it again);
# 2. an erasure does not reach reconciliation's memory (the session stays remembered, and
#    nothing marks it to be left alone);
# 3. a webhook matched to a reconciled result does not attach its event_id, so a console resend
#    after a later status is taken as new.
#
# The delivery simulation (core/tests/simulation.rs), through production's alarm-run conductor:
#
# 4. an erasure that lands while an origin is being tried does not stop the attempt (the next
#    origin gets the erased subject's data);
# 5. an event Didit created earlier, arriving while a later one is being tried, does not stop
#    the attempt (the later one overtakes it);
# 6. a claim starts a run while one is going on (two runs send the same copy);
# 7. an inbox releases its storage while it still holds an event.
# 8. a copy's history records a request with a status no origin answered (what the lookup
#    and a dead letter's listing show would not be what happened).
# 9. a limited origin's gate grants one request more than its max_concurrency;
# 10. waiting for a limited origin's turn is counted as a failed attempt (a retry spent);
# 11. an inbox sends under a grant it got too long ago (its request may outlive the lease, and
#     starts bunch up beyond the rate).
#
# The storm simulation (core/tests/storm_simulation.rs), a limited origin's backlog after an
# outage:
#
# 12. a gate's turn is a hint, not a reservation (the copy presenting it counts as a newcomer);
# 13. a reservation that finds no slot free at its turn is told "soon" rather than about when
#     its place comes (asks per event grow with the line).
#
#   scripts/planted_bugs.sh            # 40 seeds each (SEEDS to change)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$repo_root"

seeds="${SEEDS:-40}"
worktree="$(mktemp -d)/planted"
git worktree add --quiet --detach "$worktree" HEAD
trap 'git worktree remove --force "$worktree"' EXIT
export CARGO_TARGET_DIR="$repo_root/target/planted"

plant() {
  local name="$1" file="$2" from="$3" to="$4" simulation="${5:-reconcile_simulation}"
  git -C "$worktree" checkout --quiet -- .
  python3 - "$worktree/$file" "$from" "$to" <<'EOF'
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
assert text.count(old) == 1, f"{path} no longer has the line this bug is planted in: {old!r}"
open(path, "w").write(text.replace(old, new))
EOF
  echo "== planted: $name"
  local output
  if output="$(cd "$worktree" && SIM_SEEDS="$seeds" cargo test --release -q -p didit-edge-core \
      --test "$simulation" 2>&1)"; then
    echo "NOT CAUGHT: the simulation passed with this bug planted" >&2
    return 1
  fi
  grep -m1 -E '^ *SIM_SEED=' <<<"$output" || { echo "$output" | tail -20 >&2; return 1; }
}

plant "a failing session stalls the sweep" core/src/reconcile/run/handle.rs \
  "        self.failed(hand, failure);" \
  "        self.api_failed(ApiError::Unavailable { status: failure.status(), retry_after_secs: None });"
plant "an erasure does not reach reconciliation" core/src/reconcile/memory.rs \
  "    if !matches!(
        subject.kind,
        SubjectKind::Session | SubjectKind::BusinessSession
    ) {" \
  "    if true {"
plant "a matched resend's event_id is not attached" core/src/inbox/dedup.rs \
  "    pub(super) fn attach_alias(&mut self, original: Seq, claim: &Claim) {" \
  "    pub(super) fn attach_alias(&mut self, original: Seq, claim: &Claim) {
        return;"
plant "an erasure during an attempt does not stop it" core/src/inbox/run.rs \
  "                            Standing::Next => {}" \
  "                            Standing::Next => {}
                            Standing::Settled if true => {}" simulation
plant "an earlier event arriving during an attempt is overtaken" core/src/inbox/run.rs \
  "                            Standing::Overtaken => plan.stop(now.0)," \
  "                            Standing::Overtaken => {}" simulation
plant "a claim starts a second run while one is going on" core/src/inbox/gate.rs \
  "        if self.held.is_some() {
            self.again = true;
            return None;
        }" \
  "        if self.held.is_some() && false {
            self.again = true;
            return None;
        }" simulation
plant "an inbox releases its storage while it holds an event" core/src/inbox/retention.rs \
  "        self.events.is_empty() && self.erased_at.is_none() && self.unreadable.is_empty()" \
  "        self.events.len() <= 1 && self.erased_at.is_none() && self.unreadable.is_empty()" simulation
plant "a copy's history records a request no origin saw" core/src/admin/view.rs \
  "            status: entry.status," \
  "            status: entry.status.map(|status| status ^ 1)," simulation
plant "a gate grants one more than max_concurrency" core/src/origin_gate.rs \
  "        let full = slots.is_some_and(|c| self.leases.len() >= c as usize);" \
  "        let full = slots.is_some_and(|c| self.leases.len() > c as usize);" simulation
plant "waiting for a gate's turn spends a retry" core/src/attempt.rs \
  "            Some(until_ms) if self.log.is_empty() => Verdict::Deferred { until_ms }," \
  "            Some(_) if self.log.is_empty() => Verdict::Failed," simulation
plant "a stale grant is used" core/src/inbox/run.rs \
  "                            if now.0.saturating_sub(asked_at.0) <= GRANT_FRESH_MS as i64 {" \
  "                            if now.0.saturating_sub(asked_at.0) <= GRANT_FRESH_MS as i64 || true {" simulation
plant "a gate's turn is a hint: the copy presenting it is a newcomer" core/src/origin_gate.rs \
  "        let held = presented.and_then(|turn| self.reservations.iter().position(|t| *t == turn));" \
  "        let held = presented.filter(|_| false).and_then(|turn| self.reservations.iter().position(|t| *t == turn));" storm_simulation
plant "a reservation finding no slot is told 'soon', not its place" core/src/origin_gate.rs \
  "                    .max(expected_back.plus_ms(spacing.saturating_mul(ahead)))" \
  "                    .max(expected_back.plus_ms(spacing.saturating_mul(ahead * 0)))" storm_simulation
echo "== every planted bug was caught"
