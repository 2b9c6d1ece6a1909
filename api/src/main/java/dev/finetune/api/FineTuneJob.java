package dev.finetune.api;

import io.fabric8.crd.generator.annotation.AdditionalPrinterColumn;
import io.fabric8.kubernetes.api.model.Namespaced;
import io.fabric8.kubernetes.client.CustomResource;
import io.fabric8.kubernetes.model.annotation.Group;
import io.fabric8.kubernetes.model.annotation.Kind;
import io.fabric8.kubernetes.model.annotation.Plural;
import io.fabric8.kubernetes.model.annotation.ShortNames;
import io.fabric8.kubernetes.model.annotation.Singular;
import io.fabric8.kubernetes.model.annotation.Version;

/**
 * An instruction fine-tuning run of a GPT-2-family model. The operator turns it into a training Job and
 * mirrors the trainer's progress into {@code .status}; the trainer reads the same object from a file.
 *
 * <p>The printer columns are for a person watching training with {@code kubectl get ftj}.
 */
@Group(FineTuneJob.GROUP)
@Version(FineTuneJob.VERSION)
@Kind("FineTuneJob")
@Plural("finetunejobs")
@Singular("finetunejob")
@ShortNames("ftj")
@AdditionalPrinterColumn(name = "Phase", jsonPath = ".status.phase", type = AdditionalPrinterColumn.Type.STRING)
@AdditionalPrinterColumn(name = "Epoch", jsonPath = ".status.progress", type = AdditionalPrinterColumn.Type.STRING)
@AdditionalPrinterColumn(name = "Train-Loss", jsonPath = ".status.trainLoss", type = AdditionalPrinterColumn.Type.NUMBER)
@AdditionalPrinterColumn(name = "Val-Loss", jsonPath = ".status.validationLoss", type = AdditionalPrinterColumn.Type.NUMBER)
@AdditionalPrinterColumn(name = "Best", jsonPath = ".status.bestValidationLoss", type = AdditionalPrinterColumn.Type.NUMBER)
@AdditionalPrinterColumn(name = "Age", jsonPath = ".metadata.creationTimestamp", type = AdditionalPrinterColumn.Type.DATE)
public class FineTuneJob extends CustomResource<FineTuneJobSpec, FineTuneJobStatus> implements Namespaced {
  public static final String GROUP = "finetune.dev";
  public static final String VERSION = "v1alpha1";
  public static final String API_VERSION = GROUP + "/" + VERSION;

  @Override
  protected FineTuneJobSpec initSpec() {
    return new FineTuneJobSpec();
  }

  @Override
  protected FineTuneJobStatus initStatus() {
    return new FineTuneJobStatus();
  }
}
