# Sourced by the bench scripts: builds the API and MODULE's main and test classes, and sets CP to run them with their
# dependencies (test scope: the benches use test helpers such as the fake hub). Run from the repository root.
# Usage: . bench/classpath.sh MODULE
bench_module=$1
mvn -q -B -pl api install -DskipTests
mvn -q -B -pl "$bench_module" test-compile dependency:build-classpath -Dmdep.includeScope=test \
  -Dmdep.outputFile="$PWD/$bench_module/target/bench.classpath"
CP="$bench_module/target/classes:$bench_module/target/test-classes:$(cat "$bench_module/target/bench.classpath")"
