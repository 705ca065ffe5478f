#!/usr/bin/env bash
# Runs the deterministic simulations long, in release mode:
# - delivery (core/tests/simulation.rs): SEEDS runs of STEPS steps each (defaults: 700 × 1500,
#   about a million steps), from FIRST_SEED;
# - reconciliation (core/tests/reconcile_simulation.rs): RECONCILE_SEEDS runs of HOURS simulated
#   hours each (defaults: 500 × 30 h);
# - retry storms (core/tests/storm_simulation.rs): STORM_SEEDS worlds, a limited origin's
#   backlog after an outage (default 1000), each printing its drain against the ideal.
# A failure prints its seed and its last steps; replay it with SIM_SEED=<seed>.
#
#   scripts/simulate.sh
#   SEEDS=20 STEPS=50000 RECONCILE_SEEDS=20 HOURS=200 scripts/simulate.sh
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$repo_root"
export SIM_SEEDS="${SEEDS:-700}" SIM_STEPS="${STEPS:-1500}" SIM_FIRST_SEED="${FIRST_SEED:-1000}"
echo "simulation: $SIM_SEEDS runs × $SIM_STEPS steps from seed $SIM_FIRST_SEED"
time cargo test --release -p didit-edge-core --test simulation -- --nocapture 2>&1 \
  | grep -E '^(simulation:|SIM_SEED|test result|  \[)' || true
export SIM_SEEDS="${RECONCILE_SEEDS:-500}" SIM_HOURS="${HOURS:-30}"
echo "reconcile simulation: $SIM_SEEDS runs × $SIM_HOURS h from seed $SIM_FIRST_SEED"
time cargo test --release -p didit-edge-core --test reconcile_simulation -- --nocapture 2>&1 \
  | grep -E '^(reconcile simulation:|SIM_SEED|test result|  \[)' || true
export SIM_SEEDS="${STORM_SEEDS:-1000}"
echo "storm simulation: $SIM_SEEDS worlds from seed $SIM_FIRST_SEED"
time cargo test --release -p didit-edge-core --test storm_simulation -- --nocapture 2>&1 \
  | grep -E '^(SIM_SEED|  SIM_SEED|test result)' || true
