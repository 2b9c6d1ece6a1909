#!/bin/bash
# Operator benchmark: N FineTuneJobs created at once against a real kube-apiserver v1.34 (../shared/k8s),
# time until all have a Job and a Pending status, reconciliations per second, heap after GC, and the API
# requests of an idle operator. Needs etcd (apt-get install -y etcd-server) and ../shared/k8s.
# Usage: bench/operator-bench.sh [jobs=500] [idleSeconds=60]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/classpath.sh operator
exec java -Xmx1g -Dfinetune.root="$PWD" -Dfinetune.shared="$PWD/../shared" \
  -Djava.util.logging.config.file=operator/src/test/resources/logging.properties \
  -cp "$CP" dev.finetune.operator.bench.OperatorBench "$@"
