package dev.finetune.e2e;

import dev.finetune.api.testing.Holds;
import dev.finetune.operator.resources.Names;
import io.fabric8.kubernetes.api.model.BindingBuilder;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerStateBuilder;
import io.fabric8.kubernetes.api.model.ContainerStatusBuilder;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.NodeBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodCondition;
import io.fabric8.kubernetes.api.model.PodConditionBuilder;
import io.fabric8.kubernetes.api.model.PodStatus;
import io.fabric8.kubernetes.api.model.PodStatusBuilder;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.VolumeMount;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/**
 * Plays the one node of the test cluster, as a kubelet would, for the Pods it is started for (trainer Pods, and the
 * README's results Pod): binds each new Pod to itself,
 * runs the container's command as a local process (java from this JVM, the trainer jar from the build) with
 * the Pod's environment, its volumes mapped to local directories (a PVC to a directory that outlives the Pod,
 * ConfigMaps written out as files, emptyDirs), and writes the Pod's status: Running with podIP 127.0.0.1, then
 * Succeeded or Failed with the exit code and the termination message. A Pod being deleted (suspend, eviction) is
 * stopped as a kubelet stops it: SIGTERM, SIGKILL when the grace period runs out, its final status written (the
 * API server's conditions, such as DisruptionTarget, kept), then the deletion confirmed.
 */
final class FakeNode implements AutoCloseable {
  static final String NODE = "e2e-node";
  private static final String TERMINATION_LOG = "/dev/termination-log";
  private static final int MESSAGE_LIMIT = 4096;
  private static final List<String> NODE_CONDITIONS = List.of("PodScheduled", "Initialized", "ContainersReady", "Ready");

  private final KubernetesClient client;
  private final Path root;
  private final Map<String, String> jarPaths;
  private final Map<String, String> extraEnv;
  private final ExecutorService runner = Executors.newCachedThreadPool();
  private final Map<String, Process> processes = new ConcurrentHashMap<>();
  private final Map<String, Instant> seen = new ConcurrentHashMap<>();
  private final Map<String, Long> terminating = new ConcurrentHashMap<>();
  private final Map<String, Integer> exitCodes = new ConcurrentHashMap<>();
  private final ScheduledExecutorService killer = Executors.newSingleThreadScheduledExecutor();
  private final Map<String, Deque<List<String>>> holdPlans = new ConcurrentHashMap<>();
  private final Map<String, Path> holdDirs = new ConcurrentHashMap<>();
  private final Map<String, Map<String, String>> jobEnv = new ConcurrentHashMap<>();
  private final Map<String, Map<String, Path>> podMounts = new ConcurrentHashMap<>();
  private SharedIndexInformer<Pod> informer;

  /**
   * @param root where volumes and Pod directories go
   * @param jarPaths image paths to local files, e.g. /app/finetune-trainer.jar to the built jar
   * @param extraEnv set for every process (e.g. a shared DJL cache, standing in for the image's baked one)
   */
  FakeNode(KubernetesClient client, Path root, Map<String, String> jarPaths, Map<String, String> extraEnv) {
    this.client = client;
    this.root = root;
    this.jarPaths = jarPaths;
    this.extraEnv = extraEnv;
  }

  /** Runs the Pods whose label {@code key} has one of the {@code values}, e.g. app.kubernetes.io/name. */
  FakeNode start(String key, String... values) {
    if (client.nodes().withName(NODE).get() == null) {
      client.nodes().resource(new NodeBuilder().withNewMetadata().withName(NODE).endMetadata().build()).create();
    }
    informer = client.pods().inAnyNamespace().withLabelIn(key, values).inform(new ResourceEventHandler<>() {
      @Override
      public void onAdd(Pod pod) {
        accept(pod);
      }

      @Override
      public void onUpdate(Pod oldPod, Pod pod) {
        accept(pod);
      }

      @Override
      public void onDelete(Pod pod, boolean unknownFinalState) {
        Process p = processes.get(pod.getMetadata().getUid());
        if (p != null) {
          killAll(p); // gone without a graceful deletion: nothing waits for the process any more
        }
      }
    });
    return this;
  }

  /** When this node first saw the Pod. */
  Instant seenAt(Pod pod) {
    return seen.get(pod.getMetadata().getUid());
  }

  /** Directory that backs a PersistentVolumeClaim: it outlives Pods, like a real volume. */
  Path claimDir(String namespace, String claim) {
    return root.resolve("volumes").resolve(namespace).resolve(claim);
  }

  /** What a command run in a Pod's container printed, and how it exited. */
  record Exec(int exitCode, byte[] stdout, String stderr) {}

  /**
   * What {@code kubectl exec POD -- COMMAND} does in the running Pod's container, and so {@code kubectl cp}, which runs
   * tar through it: the command runs here, with the container's mount paths mapped as its own command's were (an
   * argument that is a mount path, or a path below one).
   */
  Exec exec(Pod pod, String... command) throws IOException, InterruptedException {
    String uid = pod.getMetadata().getUid();
    Map<String, Path> mounts = podMounts.get(uid);
    Process running = processes.get(uid);
    if (mounts == null || running == null || !running.isAlive()) {
      throw new AssertionError("Pod " + pod.getMetadata().getName() + " is not running on this node");
    }
    List<String> args = new ArrayList<>();
    for (String arg : command) {
      args.add(map(arg, mounts));
    }
    Path stderr = Files.createTempFile(root, "exec", ".stderr");
    Process p = new ProcessBuilder(args).redirectError(stderr.toFile()).start();
    p.getOutputStream().close();
    byte[] stdout = p.getInputStream().readAllBytes();
    int exit = p.waitFor();
    return new Exec(exit, stdout, Files.readString(stderr));
  }

  /** The exit code of the Pod's process, once it has ended. */
  Integer exitCode(Pod pod) {
    return exitCodes.get(pod.getMetadata().getUid());
  }

  /**
   * Test hold points for the next trainer Pods of a FineTuneJob, or of one of its batch Jobs (e.g. a multi-node job's
   * {@code NAME-workers}): the n-th Pod started from now on holds at the points of the n-th list ({@link Holds}); Pods
   * past the lists do not hold. So a test that interrupts a run meets the trainer at the moment it needs, however
   * fast the machine trains.
   */
  void holdPods(String job, List<List<String>> pointsPerPod) {
    holdPlans.put(job, new ConcurrentLinkedDeque<>(pointsPerPod));
  }

  /** More environment for the trainer Pods of one FineTuneJob (e.g. the libtorch its test needs, as an image would). */
  void env(String job, Map<String, String> env) {
    jobEnv.put(job, env);
  }

  /** Waits until a running trainer Pod of the FineTuneJob holds at {@code point}; that Pod. */
  Pod awaitHeld(String job, String point) {
    long deadline = System.nanoTime() + Holds.HANG_GUARD.toNanos();
    while (true) {
      for (Pod pod : informer.getStore().list()) {
        String uid = pod.getMetadata().getUid();
        Path dir = holdDirs.get(uid);
        if (job.equals(pod.getMetadata().getLabels().get(Names.JOB_LABEL)) && dir != null && processes.containsKey(uid)
            && Holds.held(dir, point)) {
          return pod;
        }
      }
      if (System.nanoTime() > deadline) {
        throw new AssertionError("no trainer Pod of " + job + " held at " + point + " within " + Holds.HANG_GUARD
            + " (a hang?); their logs:\n" + logs(job));
      }
      try {
        Thread.sleep(20);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new AssertionError("interrupted", e);
      }
    }
  }

  /** Lets the Pod's trainer go on from {@code point}. */
  void release(Pod pod, String point) {
    Holds.release(holdDirs.get(pod.getMetadata().getUid()), point);
  }

  /** The console output of every trainer Pod of the FineTuneJob this node ran, for a failure message. */
  String logs(String job) {
    StringBuilder sb = new StringBuilder();
    for (Pod pod : informer.getStore().list()) {
      if (job.equals(pod.getMetadata().getLabels().get(Names.JOB_LABEL))) {
        Path log = root.resolve("pods").resolve(pod.getMetadata().getUid()).resolve("log");
        try {
          sb.append("--- ").append(pod.getMetadata().getName()).append('\n')
              .append(Files.exists(log) ? Files.readString(log) : "(not started)\n");
        } catch (IOException e) {
          sb.append(e).append('\n');
        }
      }
    }
    return sb.toString();
  }

  /** SIGTERMs the running processes of the Pods that match (a node shutting down, say); the Pods stay. */
  int terminate(Predicate<Pod> which) {
    int signalled = 0;
    for (Pod pod : informer.getStore().list()) {
      Process p = processes.get(pod.getMetadata().getUid());
      if (p != null && p.isAlive() && which.test(pod)) {
        p.destroy();
        signalled++;
      }
    }
    return signalled;
  }

  /** SIGKILLs the running processes of the Pods that match, as a node crash or OOM kill would. */
  int kill(Predicate<Pod> which) {
    int killed = 0;
    for (Pod pod : informer.getStore().list()) {
      Process p = processes.get(pod.getMetadata().getUid());
      if (p != null && p.isAlive() && which.test(pod)) {
        killAll(p);
        killed++;
      }
    }
    return killed;
  }

  private void accept(Pod pod) {
    String uid = pod.getMetadata().getUid();
    if (pod.getMetadata().getDeletionTimestamp() != null) {
      if (seen.containsKey(uid)) {
        stop(pod);
      }
    } else if (pod.getSpec().getNodeName() == null && seen.putIfAbsent(uid, Instant.now()) == null) {
      runner.submit(() -> run(pod));
    }
  }

  /** A graceful deletion: SIGTERM now, SIGKILL when the grace period ends; run() confirms the deletion. */
  private void stop(Pod pod) {
    String uid = pod.getMetadata().getUid();
    Long grace = pod.getMetadata().getDeletionGracePeriodSeconds() != null ? pod.getMetadata().getDeletionGracePeriodSeconds()
        : pod.getSpec().getTerminationGracePeriodSeconds() != null ? pod.getSpec().getTerminationGracePeriodSeconds() : 30L;
    if (terminating.putIfAbsent(uid, grace) == null) {
      Process p = processes.get(uid);
      if (p != null) {
        signal(p, grace);
      } else if (exitCodes.containsKey(uid)) {
        confirmDeletion(pod.getMetadata().getNamespace(), pod.getMetadata().getName());
      }
      // else not started yet: run() signals the process as soon as it exists
    }
  }

  private void signal(Process p, long graceSeconds) {
    p.destroy();
    killer.schedule(() -> {
      if (p.isAlive()) {
        killAll(p);
      }
    }, graceSeconds, TimeUnit.SECONDS);
  }

  /**
   * SIGKILL to the container's every process, as the kubelet kills a container's cgroup: a launcher's ranks die with
   * it. (SIGTERM goes to the first process alone, as in a container, and the launcher passes it on.)
   */
  private static void killAll(Process p) {
    p.descendants().forEach(ProcessHandle::destroyForcibly);
    p.destroyForcibly();
  }

  /** What the kubelet does once the containers of a Pod being deleted have stopped. */
  private void confirmDeletion(String ns, String name) {
    client.pods().inNamespace(ns).withName(name).withGracePeriod(0).delete();
  }

  private void run(Pod pod) {
    String ns = pod.getMetadata().getNamespace();
    String name = pod.getMetadata().getName();
    Path podDir = root.resolve("pods").resolve(pod.getMetadata().getUid());
    try {
      client.bindings().inNamespace(ns).resource(new BindingBuilder()
          .withNewMetadata().withName(name).endMetadata()
          .withNewTarget().withKind("Node").withName(NODE).endTarget().build()).create();
      Container c = pod.getSpec().getContainers().get(0);
      Map<String, Path> mounts = mounts(pod, c, podDir);
      podMounts.put(pod.getMetadata().getUid(), Map.copyOf(mounts));
      Path terminationLog = podDir.resolve("termination-log");
      Files.createDirectories(podDir);
      Files.deleteIfExists(terminationLog);
      mounts.put(c.getTerminationMessagePath() == null ? TERMINATION_LOG : c.getTerminationMessagePath(), terminationLog);

      List<String> command = new ArrayList<>();
      if (c.getCommand() != null) {
        c.getCommand().forEach(command::add);
      }
      if (c.getArgs() != null) {
        c.getArgs().forEach(command::add);
      }
      command.replaceAll(arg -> map(arg, mounts));
      if (command.get(0).equals("java")) {
        command.set(0, ProcessHandle.current().info().command().orElse("java"));
      }
      ProcessBuilder pb = new ProcessBuilder(command).directory(podDir.toFile())
          .redirectErrorStream(true).redirectOutput(podDir.resolve("log").toFile());
      Map<String, String> env = pb.environment();
      env.keySet().removeIf(k -> k.startsWith("FINETUNE_") || k.startsWith("DJL_"));
      for (EnvVar e : c.getEnv() == null ? List.<EnvVar>of() : c.getEnv()) {
        if (e.getValue() != null) {
          env.put(e.getName(), map(e.getValue(), mounts));
        } else if (e.getValueFrom() != null && e.getValueFrom().getFieldRef() != null) {
          env.put(e.getName(), field(pod, e.getValueFrom().getFieldRef().getFieldPath()));
        }
      }
      if (env.containsKey("MASTER_ADDR") && client.services().inNamespace(ns).withName(env.get("MASTER_ADDR")).get() != null) {
        // the cluster's DNS, which this test cluster lacks: a headless Service's name resolves to its Pod, on this node
        env.put("MASTER_ADDR", "127.0.0.1");
      }
      env.put("HOME", podDir.toString());
      env.putAll(extraEnv);
      String job = pod.getMetadata().getLabels().getOrDefault(Names.JOB_LABEL, "");
      env.putAll(jobEnv.getOrDefault(job, Map.of()));
      Deque<List<String>> plan = holdPlans.get(pod.getMetadata().getLabels().getOrDefault("batch.kubernetes.io/job-name", ""));
      plan = plan != null ? plan : holdPlans.get(job);
      List<String> holds = plan == null ? null : plan.poll();
      if (holds != null && !holds.isEmpty()) {
        Path dir = podDir.resolve("holds");
        holdDirs.put(pod.getMetadata().getUid(), dir);
        env.putAll(Holds.env(dir, holds));
      }

      Instant started = Instant.now();
      String uid = pod.getMetadata().getUid();
      Process process = pb.start();
      processes.put(uid, process);
      if (terminating.containsKey(uid)) {
        signal(process, terminating.get(uid));
      }
      writeStatus(ns, name, running(c, started));
      int exit = process.waitFor();
      exitCodes.put(uid, exit);
      processes.remove(uid);
      String message = terminationMessage(terminationLog, podDir.resolve("log"), exit, c.getTerminationMessagePolicy());
      writeStatus(ns, name, terminated(c, started, exit, message));
      if (terminating.containsKey(uid)) {
        confirmDeletion(ns, name);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (Exception e) {
      System.err.println("fake node: cannot run pod " + ns + "/" + name + ": " + e);
      e.printStackTrace();
    }
  }

  /** The downward API's value of a field path: name, namespace, an annotation or label; else the node's IP. */
  private static String field(Pod pod, String path) {
    var meta = pod.getMetadata();
    java.util.regex.Matcher keyed = java.util.regex.Pattern.compile("metadata\\.(annotations|labels)\\['(.+)'\\]").matcher(path);
    if (keyed.matches()) {
      Map<String, String> values = keyed.group(1).equals("labels") ? meta.getLabels() : meta.getAnnotations();
      return values == null ? "" : values.getOrDefault(keyed.group(2), "");
    }
    return path.equals("metadata.name") ? meta.getName() : path.equals("metadata.namespace") ? meta.getNamespace() : "127.0.0.1";
  }

  /** Mount path to local path, for every volume mount of the container. */
  private Map<String, Path> mounts(Pod pod, Container c, Path podDir) throws IOException {
    Map<String, Volume> volumes = new HashMap<>();
    pod.getSpec().getVolumes().forEach(v -> volumes.put(v.getName(), v));
    Map<String, Path> mounts = new HashMap<>();
    for (VolumeMount m : c.getVolumeMounts()) {
      Volume v = volumes.get(m.getName());
      Path dir;
      if (v.getPersistentVolumeClaim() != null) {
        dir = claimDir(pod.getMetadata().getNamespace(), v.getPersistentVolumeClaim().getClaimName());
      } else if (v.getConfigMap() != null) {
        dir = podDir.resolve("configmap-" + v.getName());
        ConfigMap cm = client.configMaps().inNamespace(pod.getMetadata().getNamespace()).withName(v.getConfigMap().getName()).get();
        Files.createDirectories(dir);
        for (Map.Entry<String, String> e : cm.getData().entrySet()) {
          Files.writeString(dir.resolve(e.getKey()), e.getValue());
        }
        if (v.getConfigMap().getItems() != null) {
          for (var item : v.getConfigMap().getItems()) {
            Files.writeString(dir.resolve(item.getPath()), cm.getData().get(item.getKey()));
          }
        }
      } else {
        dir = podDir.resolve("volume-" + v.getName());
      }
      if (m.getSubPath() != null && !m.getSubPath().isEmpty()) {
        dir = dir.resolve(m.getSubPath());
      }
      Files.createDirectories(dir);
      mounts.put(m.getMountPath(), dir);
    }
    return mounts;
  }

  /** Rewrites image paths in an argument: jars to local jars, mount paths to local directories. */
  private String map(String arg, Map<String, Path> mounts) {
    for (Map.Entry<String, String> jar : jarPaths.entrySet()) {
      if (arg.contains(jar.getKey())) {
        return arg.replace(jar.getKey(), jar.getValue());
      }
    }
    List<String> longestFirst = mounts.keySet().stream().sorted(Comparator.comparingInt(String::length).reversed()).toList();
    for (String mountPath : longestFirst) {
      int at = arg.indexOf(mountPath);
      boolean starts = at == 0 || (at > 0 && arg.charAt(at - 1) == '=');
      int end = at + mountPath.length();
      boolean boundary = at >= 0 && (end == arg.length() || arg.charAt(end) == '/');
      if (starts && boundary) {
        return arg.substring(0, at) + mounts.get(mountPath) + arg.substring(end);
      }
    }
    return arg;
  }

  /** The termination message as the kubelet makes it: the file, else the log's tail on failure if asked. */
  private static String terminationMessage(Path file, Path log, int exit, String policy) throws IOException {
    String message = Files.exists(file) ? Files.readString(file, StandardCharsets.UTF_8) : "";
    if (message.isEmpty() && exit != 0 && "FallbackToLogsOnError".equals(policy) && Files.exists(log)) {
      List<String> lines = Files.readAllLines(log);
      message = String.join("\n", lines.subList(Math.max(0, lines.size() - 80), lines.size()));
    }
    byte[] bytes = message.getBytes(StandardCharsets.UTF_8);
    return bytes.length <= MESSAGE_LIMIT ? message : new String(bytes, bytes.length - MESSAGE_LIMIT, MESSAGE_LIMIT, StandardCharsets.UTF_8);
  }

  private static PodStatus running(Container c, Instant started) {
    return new PodStatusBuilder()
        .withPhase("Running").withHostIP("127.0.0.1").withPodIP("127.0.0.1").withStartTime(started.toString())
        .withConditions(conditions("True", started))
        .withContainerStatuses(new ContainerStatusBuilder()
            .withName(c.getName()).withImage(c.getImage()).withImageID("fake://" + c.getImage())
            .withReady(true).withStarted(true).withRestartCount(0)
            .withState(new ContainerStateBuilder().withNewRunning().withStartedAt(started.toString()).endRunning().build())
            .build())
        .build();
  }

  private static PodStatus terminated(Container c, Instant started, int exit, String message) {
    Instant finished = Instant.now();
    return new PodStatusBuilder()
        .withPhase(exit == 0 ? "Succeeded" : "Failed").withHostIP("127.0.0.1").withPodIP("127.0.0.1")
        .withStartTime(started.toString())
        .withConditions(conditions("False", finished))
        .withContainerStatuses(new ContainerStatusBuilder()
            .withName(c.getName()).withImage(c.getImage()).withImageID("fake://" + c.getImage())
            .withReady(false).withStarted(false).withRestartCount(0)
            .withState(new ContainerStateBuilder().withNewTerminated()
                .withExitCode(exit).withReason(exit == 0 ? "Completed" : "Error").withMessage(message.isEmpty() ? null : message)
                .withStartedAt(started.toString()).withFinishedAt(finished.toString()).endTerminated().build())
            .build())
        .build();
  }

  private static List<PodCondition> conditions(String ready, Instant at) {
    List<PodCondition> list = new ArrayList<>();
    for (String type : NODE_CONDITIONS) {
      String status = type.equals("PodScheduled") || type.equals("Initialized") ? "True" : ready;
      list.add(new PodConditionBuilder().withType(type).withStatus(status).withLastTransitionTime(at.toString()).build());
    }
    return list;
  }

  /** Writes the node's view of the Pod's status, keeping conditions others set (DisruptionTarget on an eviction). */
  private void writeStatus(String ns, String name, PodStatus status) {
    client.pods().inNamespace(ns).withName(name).editStatus(p -> {
      List<PodCondition> others = p.getStatus() == null || p.getStatus().getConditions() == null ? List.of()
          : p.getStatus().getConditions().stream().filter(c -> !NODE_CONDITIONS.contains(c.getType())).toList();
      status.getConditions().addAll(others);
      p.setStatus(status);
      return p;
    });
  }

  @Override
  public void close() {
    if (informer != null) {
      informer.close();
    }
    processes.values().forEach(FakeNode::killAll);
    runner.shutdownNow();
    killer.shutdownNow();
  }

  static void deleteRecursively(Path dir) {
    if (!Files.exists(dir)) {
      return;
    }
    try (var files = Files.walk(dir)) {
      files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
