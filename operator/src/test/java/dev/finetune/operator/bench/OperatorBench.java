package dev.finetune.operator.bench;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus.Phase;
import dev.finetune.api.testing.RealKubeApiServer;
import dev.finetune.operator.FineTuneOperator;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.testing.FakeTrainer;
import dev.finetune.operator.testing.Jobs;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.http.BasicBuilder;
import io.fabric8.kubernetes.client.http.HttpRequest;
import io.fabric8.kubernetes.client.http.Interceptor;
import io.micrometer.core.instrument.Meter;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.LongAdder;

/**
 * Operator benchmark on a real kube-apiserver ({@link RealKubeApiServer#VERSION}, no controller manager, so no Pods): N FineTuneJobs created
 * at once; time until every one has its Job and a Pending status; reconciliations per second; heap after a full
 * GC; then an idle period in which every API request of the operator's client is counted (watches and the
 * leader-election Lease apart); then every trainer runs (the bench writes the Pods as a kubelet would, one fake
 * /progress serves them all): time until every status shows the reported epoch, reconciliations and API requests
 * while progress changes and while it does not. Run with bench/operator-bench.sh. Args: [jobs=500]
 * [idleSeconds=60]; env FINETUNE_RECONCILE_THREADS (10), FINETUNE_PROGRESS_INTERVAL_SECONDS (5).
 */
public final class OperatorBench {
  /** Counts the operator client's requests by kind: "GET pods (watch)", "POST jobs", ... */
  static final class Counter implements Interceptor {
    final Map<String, LongAdder> counts = new ConcurrentHashMap<>();

    @Override
    public void before(BasicBuilder builder, HttpRequest request, RequestTags tags) {
      String path = request.uri().getPath();
      String query = request.uri().getQuery() == null ? "" : request.uri().getQuery();
      String[] parts = path.split("/");
      String resource = parts.length == 0 ? path : parts[parts.length - 1];
      // .../namespaces/ns/<resource>/<name>[/status]
      for (int i = 0; i < parts.length; i++) {
        if (parts[i].equals("namespaces") && i + 2 < parts.length) {
          resource = parts[i + 2] + (parts.length > i + 4 ? "/" + parts[parts.length - 1] : "");
          if (parts.length == i + 4) {
            resource = parts[i + 2];
          }
          break;
        }
      }
      if (!path.contains("/namespaces/")) {
        resource = parts.length > 0 ? parts[parts.length - 1] : path;
      }
      String kind = request.method() + " " + resource + (query.contains("watch=true") ? " (watch)" : "");
      counts.computeIfAbsent(kind, k -> new LongAdder()).increment();
    }

    Map<String, Long> snapshot() {
      Map<String, Long> m = new TreeMap<>();
      counts.forEach((k, v) -> m.put(k, v.sum()));
      return m;
    }

    void reset() {
      counts.clear();
    }
  }

  public static void main(String[] args) throws Exception {
    int code = 0;
    try {
      run(args);
    } catch (Throwable t) {
      t.printStackTrace();
      code = 1;
    }
    System.exit(code); // a failed run must not hang on non-daemon threads
  }

  private static void run(String[] args) throws Exception {
    int n = args.length > 0 ? Integer.parseInt(args[0]) : 500;
    int idleSeconds = args.length > 1 ? Integer.parseInt(args[1]) : 60;
    String ns = "bench";
    try (RealKubeApiServer kube = RealKubeApiServer.start(false)) {
      KubernetesClient admin = kube.client();
      kube.installCrd();
      admin.namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(ns).endMetadata().build()).create();
      // no controller manager here: the Pods of phase 2 need the namespace's default ServiceAccount
      admin.serviceAccounts().inNamespace(ns).resource(new io.fabric8.kubernetes.api.model.ServiceAccountBuilder()
          .withNewMetadata().withName("default").endMetadata().build()).create();

      Counter counter = new Counter();
      Config config = Config.fromKubeconfig(null, Files.readString(kube.kubeconfig()), kube.kubeconfig().toString());
      config.setMaxConcurrentRequests(256);
      config.setMaxConcurrentRequestsPerHost(256);
      KubernetesClient operatorClient = new KubernetesClientBuilder().withConfig(config)
          .withHttpClientBuilderConsumer(b -> b.addOrReplaceInterceptor("bench-counter", counter)).build();
      FakeTrainer trainer = new FakeTrainer();
      trainer.set(Jobs.progress(1, 3));
      int interval = Integer.parseInt(System.getenv().getOrDefault("FINETUNE_PROGRESS_INTERVAL_SECONDS", "5"));
      OperatorConfig oc = OperatorConfig.fromEnv(Map.of(
          "FINETUNE_LEADER_ELECTION_NAMESPACE", "default", "POD_NAME", "bench-operator",
          "FINETUNE_TRAINER_PORT", String.valueOf(trainer.port()),
          "FINETUNE_PROGRESS_INTERVAL_SECONDS", String.valueOf(interval),
          "FINETUNE_RECONCILE_THREADS", System.getenv().getOrDefault("FINETUNE_RECONCILE_THREADS", "10")));
      System.gc();
      long heapBefore = heapUsed();
      PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
      FineTuneOperator operator = FineTuneOperator.create(operatorClient, oc, registry).start();
      while (!operator.isReady()) {
        Thread.sleep(100);
      }
      Thread.sleep(2000);
      Map<String, Long> startup = counter.snapshot();
      counter.reset();

      ExecutorService pool = Executors.newFixedThreadPool(32);
      long t0 = System.nanoTime();
      List<Future<?>> creates = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        String name = String.format("job-%04d", i);
        creates.add(pool.submit(() -> admin.resource(Jobs.small(name, ns)).create()));
      }
      for (Future<?> f : creates) {
        f.get();
      }
      double createdSeconds = (System.nanoTime() - t0) / 1e9;
      long done;
      while (true) {
        List<FineTuneJob> all = admin.resources(FineTuneJob.class).inNamespace(ns).list().getItems();
        done = all.stream().filter(j -> j.getStatus() != null && j.getStatus().phase == Phase.Pending
            && j.getStatus().jobName != null).count();
        int jobs = admin.batch().v1().jobs().inNamespace(ns).list().getItems().size();
        if (done == n && jobs == n) {
          break;
        }
        if ((System.nanoTime() - t0) / 1e9 > 600) {
          throw new IllegalStateException("timed out: " + done + " pending, " + jobs + " jobs");
        }
        Thread.sleep(500); // two lists of N objects: cheap enough not to slow the API server much
      }
      double seconds = (System.nanoTime() - t0) / 1e9;
      pool.shutdown();
      Thread.sleep(3000); // let the last reconciliations (triggered by the Job watch events) finish
      Map<String, Long> burst = counter.snapshot();
      double reconciles = reconciliations(registry);

      System.gc();
      Thread.sleep(500);
      System.gc();
      long heapAfter = heapUsed();

      counter.reset();
      Thread.sleep(idleSeconds * 1000L);
      Map<String, Long> idle = counter.snapshot();
      double reconcilesIdle = reconciliations(registry) - reconciles;

      System.out.printf("%n=== operator benchmark: %d FineTuneJobs, kube-apiserver v%s on loopback, %d CPUs ===%n",
          n, RealKubeApiServer.VERSION, Runtime.getRuntime().availableProcessors());
      System.out.printf("reconcile threads: %d%n", oc.reconcileThreads());
      System.out.printf("created %d FineTuneJobs in %.2f s (32 client threads)%n", n, createdSeconds);
      System.out.printf("all %d have a Job and status Pending after %.2f s (%.1f jobs/s)%n", n, seconds, n / seconds);
      System.out.printf("reconciliations: %.0f in all, %.1f per second over that time%n", reconciles, reconciles / seconds);
      System.out.printf("heap used after full GC: %.1f MiB (%.1f MiB before the operator started; max heap %.0f MiB)%n",
          heapAfter / 1048576.0, heapBefore / 1048576.0, Runtime.getRuntime().maxMemory() / 1048576.0);
      System.out.println("operator API requests at startup: " + startup);
      System.out.println("operator API requests during the burst: " + burst);
      System.out.printf("idle %d s with %d jobs: %.0f reconciliations; API requests: %s%n", idleSeconds, n,
          reconcilesIdle, idle);
      long nonWatch = idle.entrySet().stream()
          .filter(e -> !e.getKey().contains("(watch)") && !e.getKey().contains("leases"))
          .mapToLong(Map.Entry::getValue).sum();
      System.out.println("idle requests other than watches and the leader-election Lease: " + nonWatch);

      // Phase 2: every trainer runs (the bench plays kubelet: a Pod per Job, Running on 127.0.0.1 with one fake
      // /progress for all); how long until every status shows the trainer's epoch, and what a steady poll costs.
      ExecutorService kubelet = Executors.newFixedThreadPool(32);
      List<Future<?>> started = new ArrayList<>();
      double r0 = reconciliations(registry);
      long t1 = System.nanoTime();
      for (Job job : admin.batch().v1().jobs().inNamespace(ns).list().getItems()) {
        started.add(kubelet.submit(() -> {
          Pod pod = admin.pods().resource(Jobs.podFor(job, "run")).create();
          Jobs.running(pod, "127.0.0.1");
          admin.pods().resource(pod).updateStatus();
        }));
      }
      for (Future<?> f : started) {
        f.get();
      }
      kubelet.shutdown();
      double podsSeconds = (System.nanoTime() - t1) / 1e9;
      double runningSeconds = awaitEpoch(admin, ns, n, 1, t1);
      counter.reset();
      long polls0 = trainer.polls();
      double r1 = reconciliations(registry);
      long t2 = System.nanoTime();
      trainer.set(Jobs.progress(2, 3));
      double epochSeconds = awaitEpoch(admin, ns, n, 2, t2);
      Map<String, Long> epochRequests = counter.snapshot();
      double r2 = reconciliations(registry);
      counter.reset();
      long polls1 = trainer.polls();
      Thread.sleep(30_000);
      Map<String, Long> steady = counter.snapshot();
      double r3 = reconciliations(registry);
      long polls2 = trainer.polls();
      System.gc();
      Thread.sleep(500);
      System.gc();
      System.out.printf("%n--- %d running trainers, /progress every %d s ---%n", n, interval);
      System.out.printf("made %d Pods Running in %.1f s; every status shows epoch 1 after %.1f s (%.0f reconciliations)%n",
          n, podsSeconds, runningSeconds, r1 - r0);
      System.out.printf("the trainers report epoch 2: every status shows it after %.1f s; %.0f reconciliations, %d polls;"
          + " API requests: %s%n", epochSeconds, r2 - r1, polls1 - polls0, epochRequests);
      System.out.printf("steady 30 s (progress unchanged): %d polls (%.1f/s), %.0f reconciliations, API requests: %s%n",
          polls2 - polls1, (polls2 - polls1) / 30.0, r3 - r2, steady);
      System.out.printf("heap used after full GC with %d running trainers: %.1f MiB%n", n, heapUsed() / 1048576.0);
      trainer.close();
      operator.close();
      operatorClient.close();
    }
  }

  private static double awaitEpoch(KubernetesClient admin, String ns, int n, int epoch, long since)
      throws InterruptedException {
    while (true) {
      long shown = admin.resources(FineTuneJob.class).inNamespace(ns).list().getItems().stream()
          .filter(j -> j.getStatus() != null && j.getStatus().phase == Phase.Running
              && Integer.valueOf(epoch).equals(j.getStatus().epoch)).count();
      if (shown == n) {
        return (System.nanoTime() - since) / 1e9;
      }
      if ((System.nanoTime() - since) / 1e9 > 600) {
        throw new IllegalStateException("timed out: " + shown + " of " + n + " show epoch " + epoch);
      }
      Thread.sleep(500);
    }
  }

  private static double reconciliations(PrometheusMeterRegistry registry) {
    double sum = 0;
    for (Meter m : registry.getMeters()) {
      if (m.getId().getName().equals("operator.sdk.reconciliations.started")) {
        for (var measure : m.measure()) {
          sum += measure.getValue();
        }
      }
    }
    return sum;
  }

  private static long heapUsed() {
    return ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
  }
}
