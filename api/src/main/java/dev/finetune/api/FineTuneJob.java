package dev.finetune.api;

import io.fabric8.crd.generator.annotation.AdditionalPrinterColumn;
import io.fabric8.generator.annotation.ValidationRule;
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
@AdditionalPrinterColumn(name = "Ranks", jsonPath = ".status.ranks", type = AdditionalPrinterColumn.Type.STRING, priority = 1)
@AdditionalPrinterColumn(name = "Model", jsonPath = ".status.model", type = AdditionalPrinterColumn.Type.STRING, priority = 1)
@AdditionalPrinterColumn(name = "Precision", jsonPath = ".status.precision", type = AdditionalPrinterColumn.Type.STRING, priority = 1)
@AdditionalPrinterColumn(name = "Device", jsonPath = ".status.device", type = AdditionalPrinterColumn.Type.STRING, priority = 1)
@AdditionalPrinterColumn(name = "Results", jsonPath = ".status.results", type = AdditionalPrinterColumn.Type.STRING, priority = 1)
@AdditionalPrinterColumn(name = "Age", jsonPath = ".metadata.creationTimestamp", type = AdditionalPrinterColumn.Type.DATE)
@ValidationRule(value = "self.metadata.name.size() <= 52 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
    messageExpression = "\"metadata.name: '\" + self.metadata.name + \"' must be at most 52 lower-case letters, digits or '-',"
        + " starting and ending with a letter or digit\"")
@ValidationRule(value = "!has(oldSelf.status) || !has(oldSelf.status.jobName) || " + FineTuneJob.SPEC_BUT_SUSPEND_UNCHANGED,
    fieldPath = ".spec", reason = "FieldValueForbidden",
    messageExpression = "'changed after training Job ' + oldSelf.status.jobName + ' was created; only spec.suspend can change"
        + " because a Job\\'s Pod template is immutable. Delete and re-create the FineTuneJob to change anything else."
        + " Its claim is kept (spec.checkpoints.retainClaim, the default) and a re-created job of the same name continues"
        + " its run there: for other model, data or training settings, use another name or spec.checkpoints.path.'")
public class FineTuneJob extends CustomResource<FineTuneJobSpec, FineTuneJobStatus> implements Namespaced {
  public static final String GROUP = "finetune.dev";
  public static final String VERSION = "v1alpha1";
  public static final String API_VERSION = GROUP + "/" + VERSION;
  /**
   * CEL: the spec equals the old spec but for suspend (the operator's spec hash leaves out the same); a field present
   * on one side only is a change. Written out field by field: CEL has no "object without a key", and optional
   * selection ({@code ?.}) costs too much for the API server's estimate. CrdTest checks that no field is missing.
   */
  static final String SPEC_BUT_SUSPEND_UNCHANGED =
      "(has(self.spec.model) ? has(oldSelf.spec.model) && self.spec.model == oldSelf.spec.model : !has(oldSelf.spec.model))"
      + " && (has(self.spec.dataset) ? has(oldSelf.spec.dataset) && self.spec.dataset == oldSelf.spec.dataset : !has(oldSelf.spec.dataset))"
      + " && (has(self.spec.training) ? has(oldSelf.spec.training) && self.spec.training == oldSelf.spec.training : !has(oldSelf.spec.training))"
      + " && (has(self.spec.earlyStopping) ? has(oldSelf.spec.earlyStopping) && self.spec.earlyStopping == oldSelf.spec.earlyStopping : !has(oldSelf.spec.earlyStopping))"
      + " && (has(self.spec.checkpoints) ? has(oldSelf.spec.checkpoints) && self.spec.checkpoints == oldSelf.spec.checkpoints : !has(oldSelf.spec.checkpoints))"
      + " && (has(self.spec.evaluation) ? has(oldSelf.spec.evaluation) && self.spec.evaluation == oldSelf.spec.evaluation : !has(oldSelf.spec.evaluation))"
      + " && (has(self.spec.resources) ? has(oldSelf.spec.resources) && self.spec.resources == oldSelf.spec.resources : !has(oldSelf.spec.resources))"
      + " && (has(self.spec.image) ? has(oldSelf.spec.image) && self.spec.image == oldSelf.spec.image : !has(oldSelf.spec.image))"
      + " && (has(self.spec.imagePullPolicy) ? has(oldSelf.spec.imagePullPolicy) && self.spec.imagePullPolicy == oldSelf.spec.imagePullPolicy : !has(oldSelf.spec.imagePullPolicy))"
      + " && (has(self.spec.nodeSelector) ? has(oldSelf.spec.nodeSelector) && self.spec.nodeSelector == oldSelf.spec.nodeSelector : !has(oldSelf.spec.nodeSelector))"
      + " && (has(self.spec.tolerations) ? has(oldSelf.spec.tolerations) && self.spec.tolerations == oldSelf.spec.tolerations : !has(oldSelf.spec.tolerations))"
      + " && (has(self.spec.affinity) ? has(oldSelf.spec.affinity) && self.spec.affinity == oldSelf.spec.affinity : !has(oldSelf.spec.affinity))"
      + " && (has(self.spec.priorityClassName) ? has(oldSelf.spec.priorityClassName) && self.spec.priorityClassName == oldSelf.spec.priorityClassName : !has(oldSelf.spec.priorityClassName))"
      + " && (has(self.spec.serviceAccountName) ? has(oldSelf.spec.serviceAccountName) && self.spec.serviceAccountName == oldSelf.spec.serviceAccountName : !has(oldSelf.spec.serviceAccountName))"
      + " && (has(self.spec.labels) ? has(oldSelf.spec.labels) && self.spec.labels == oldSelf.spec.labels : !has(oldSelf.spec.labels))"
      + " && (has(self.spec.backoffLimit) ? has(oldSelf.spec.backoffLimit) && self.spec.backoffLimit == oldSelf.spec.backoffLimit : !has(oldSelf.spec.backoffLimit))"
      + " && (has(self.spec.activeDeadlineSeconds) ? has(oldSelf.spec.activeDeadlineSeconds) && self.spec.activeDeadlineSeconds == oldSelf.spec.activeDeadlineSeconds : !has(oldSelf.spec.activeDeadlineSeconds))"
      + " && (has(self.spec.ttlSecondsAfterFinished) ? has(oldSelf.spec.ttlSecondsAfterFinished) && self.spec.ttlSecondsAfterFinished == oldSelf.spec.ttlSecondsAfterFinished : !has(oldSelf.spec.ttlSecondsAfterFinished))";

  @Override
  protected FineTuneJobSpec initSpec() {
    return new FineTuneJobSpec();
  }

  @Override
  protected FineTuneJobStatus initStatus() {
    return new FineTuneJobStatus();
  }
}
