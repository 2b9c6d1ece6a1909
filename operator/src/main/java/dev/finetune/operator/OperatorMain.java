package dev.finetune.operator;

import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.server.HealthServer;
import dev.finetune.operator.server.JsonLogFormatter;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.logging.ConsoleHandler;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogManager;
import java.util.logging.SimpleFormatter;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The operator process: reads {@link OperatorConfig} from the environment (every variable is listed there and in
 * operator/README.md), serves /metrics, /healthz and /readyz, runs the FineTuneJob controller with leader
 * election, and stops cleanly on SIGTERM (in-flight reconciliations finish, the Lease is released by expiry).
 */
public final class OperatorMain {
  private OperatorMain() {}

  public static void main(String[] args) throws Exception {
    // keep the log handlers until the shutdown hook has logged (the JDK's own hook would reset them at once)
    System.setProperty("java.util.logging.manager", KeepHandlersLogManager.class.getName());
    OperatorConfig config;
    try {
      config = OperatorConfig.fromEnv();
    } catch (IllegalArgumentException e) {
      System.err.println("finetune-operator: bad configuration: " + e.getMessage());
      System.exit(2);
      return;
    }
    configureLogging(config);
    Logger log = LoggerFactory.getLogger(OperatorMain.class);

    PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    new JvmMemoryMetrics().bindTo(registry);
    new JvmGcMetrics().bindTo(registry);
    new JvmThreadMetrics().bindTo(registry);
    new ProcessorMetrics().bindTo(registry);

    KubernetesClient client = new KubernetesClientBuilder().build();
    FineTuneOperator operator = FineTuneOperator.create(client, config, registry);
    AtomicBoolean stopping = new AtomicBoolean();
    HealthServer http = null;
    if (config.metricsPort() > 0) {
      http = new HealthServer(config.metricsPort(), registry, () -> !stopping.get(),
          () -> !stopping.get() && operator.isReady(), operator::health).start();
      log.info("msg=\"http server\" port={} paths=/metrics,/healthz,/readyz", http.port());
    }
    CountDownLatch stopped = new CountDownLatch(1);
    HealthServer server = http;
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      stopping.set(true);
      log.info("msg=\"shutdown requested\"");
      try {
        operator.close();
        client.close();
      } catch (RuntimeException e) {
        log.warn("msg=\"error while stopping\" error=\"{}\"", e.toString());
      } finally {
        if (server != null) {
          server.close();
        }
        stopped.countDown();
      }
    }, "shutdown"));
    try {
      operator.start();
    } catch (RuntimeException e) {
      // e.g. the API server is unreachable or the CRD is not installed: exit, so that Kubernetes restarts us
      log.error("msg=\"operator failed to start\" error=\"{}\"", String.valueOf(e.getMessage()).replace("\"", "'"), e);
      System.exit(1);
    }
    stopped.await();
  }

  /** A LogManager whose handlers survive the JVM's shutdown, so that the last lines of a stop are written. */
  public static final class KeepHandlersLogManager extends LogManager {
    private volatile boolean allowReset;

    @Override
    public void reset() {
      if (allowReset) {
        super.reset();
      }
    }

    void resetNow() {
      allowReset = true;
      try {
        super.reset();
      } finally {
        allowReset = false;
      }
    }
  }

  static void configureLogging(OperatorConfig config) {
    if (LogManager.getLogManager() instanceof KeepHandlersLogManager keep) {
      keep.resetNow();
    } else {
      LogManager.getLogManager().reset();
    }
    java.util.logging.Logger root = java.util.logging.Logger.getLogger("");
    Handler handler = new ConsoleHandler();
    handler.setFormatter("text".equalsIgnoreCase(config.logFormat()) ? new SimpleFormatter() : new JsonLogFormatter());
    Level level = switch (config.logLevel().toUpperCase(java.util.Locale.ROOT)) {
      case "ERROR" -> Level.SEVERE;
      case "WARN", "WARNING" -> Level.WARNING;
      case "DEBUG" -> Level.FINE;
      case "TRACE" -> Level.FINEST;
      default -> Level.INFO;
    };
    handler.setLevel(level);
    root.setLevel(level);
    root.addHandler(handler);
  }
}
