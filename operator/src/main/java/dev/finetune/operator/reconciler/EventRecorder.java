package dev.finetune.operator.reconciler;

import dev.finetune.api.FineTuneJob;
import io.fabric8.kubernetes.api.model.Event;
import io.fabric8.kubernetes.api.model.EventBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes core/v1 Events about a FineTuneJob, for {@code kubectl describe ftj}. The reconciler decides what is
 * new by comparing the old and the new status, so each fact is recorded once. A failed write is logged and
 * does not fail the reconciliation.
 */
public class EventRecorder {
  public static final String COMPONENT = "finetune-operator";
  public static final String NORMAL = "Normal";
  public static final String WARNING = "Warning";
  private static final Logger LOG = LoggerFactory.getLogger(EventRecorder.class);
  private static final int MAX_MESSAGE = 1024;
  private final KubernetesClient client;
  private final String instance;
  private final AtomicLong sequence = new AtomicLong();

  public EventRecorder(KubernetesClient client, String instance) {
    this.client = client;
    this.instance = instance;
  }

  public void normal(FineTuneJob ftj, String reason, String message) {
    record(ftj, NORMAL, reason, message);
  }

  public void warning(FineTuneJob ftj, String reason, String message) {
    record(ftj, WARNING, reason, message);
  }

  public void record(FineTuneJob ftj, String type, String reason, String message) {
    String ns = ftj.getMetadata().getNamespace();
    String now = Instant.now().truncatedTo(ChronoUnit.SECONDS).toString();
    String text = message.length() > MAX_MESSAGE ? message.substring(0, MAX_MESSAGE - 3) + "..." : message;
    Event event = new EventBuilder()
        .withNewMetadata()
        .withName(ftj.getMetadata().getName() + "." + Long.toHexString(System.nanoTime()) + Long.toHexString(sequence.incrementAndGet()))
        .withNamespace(ns)
        .endMetadata()
        .withNewInvolvedObject()
        .withApiVersion(FineTuneJob.API_VERSION)
        .withKind("FineTuneJob")
        .withName(ftj.getMetadata().getName())
        .withNamespace(ns)
        .withUid(ftj.getMetadata().getUid())
        .endInvolvedObject()
        .withType(type)
        .withReason(reason)
        .withMessage(text)
        .withFirstTimestamp(now)
        .withLastTimestamp(now)
        .withCount(1)
        .withNewSource().withComponent(COMPONENT).endSource()
        .withReportingComponent(COMPONENT)
        .withReportingInstance(instance)
        .build();
    LOG.info("msg=\"event\" namespace={} name={} type={} reason={} message=\"{}\"",
        ns, ftj.getMetadata().getName(), type, reason, text.replace("\"", "'"));
    try {
      client.v1().events().inNamespace(ns).resource(event).create();
    } catch (KubernetesClientException e) {
      LOG.warn("msg=\"cannot record event\" namespace={} name={} reason={} code={} error=\"{}\"",
          ns, ftj.getMetadata().getName(), reason, e.getCode(), e.getMessage());
    }
  }
}
