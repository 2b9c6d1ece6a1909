package dev.finetune.operator.resources;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonInclude;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.Namespaced;
import io.fabric8.kubernetes.api.model.batch.v1.JobTemplateSpec;
import io.fabric8.kubernetes.client.CustomResource;
import io.fabric8.kubernetes.model.annotation.Group;
import io.fabric8.kubernetes.model.annotation.Kind;
import io.fabric8.kubernetes.model.annotation.Plural;
import io.fabric8.kubernetes.model.annotation.Version;
import java.util.List;
import java.util.Optional;

/**
 * The fields of a JobSet (jobset.x-k8s.io/v1alpha2, kubernetes-sigs/jobset) that the operator writes and reads: a
 * group of Jobs that Kueue admits as one workload and the JobSet controller restarts together. Unknown fields are
 * ignored on reading, and unset ones are left out on writing, so the JobSet controller's defaults apply.
 */
@Group(JobSet.GROUP)
@Version(JobSet.VERSION)
@Kind("JobSet")
@Plural("jobsets")
public class JobSet extends CustomResource<JobSet.Spec, JobSet.Status> implements Namespaced {
  public static final String GROUP = "jobset.x-k8s.io";
  public static final String VERSION = "v1alpha2";
  /** On the Jobs and Pods the JobSet controller makes: the JobSet's name, and the replicated Job's. */
  public static final String NAME_LABEL = "jobset.sigs.k8s.io/jobset-name";
  public static final String REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name";

  /** The name of the Job the JobSet controller makes for replica {@code index} of a replicated Job. */
  public static String childJob(String jobSet, String replicatedJob, int index) {
    return jobSet + "-" + replicatedJob + "-" + index;
  }

  @JsonInclude(JsonInclude.Include.NON_NULL)
  @JsonIgnoreProperties(ignoreUnknown = true)
  public static class Spec {
    public List<ReplicatedJob> replicatedJobs;
    public Network network;
    public SuccessPolicy successPolicy;
    public FailurePolicy failurePolicy;
    public Boolean suspend;
    public Integer ttlSecondsAfterFinished;
  }

  @JsonInclude(JsonInclude.Include.NON_NULL)
  @JsonIgnoreProperties(ignoreUnknown = true)
  public static class ReplicatedJob {
    public String name;
    public Integer replicas;
    public JobTemplateSpec template;

    public ReplicatedJob() {}

    public ReplicatedJob(String name, int replicas, JobTemplateSpec template) {
      this.name = name;
      this.replicas = replicas;
      this.template = template;
    }
  }

  @JsonInclude(JsonInclude.Include.NON_NULL)
  @JsonIgnoreProperties(ignoreUnknown = true)
  public static class Network {
    public Boolean enableDNSHostnames;
  }

  @JsonInclude(JsonInclude.Include.NON_NULL)
  @JsonIgnoreProperties(ignoreUnknown = true)
  public static class SuccessPolicy {
    public String operator;
  }

  @JsonInclude(JsonInclude.Include.NON_NULL)
  @JsonIgnoreProperties(ignoreUnknown = true)
  public static class FailurePolicy {
    public Integer maxRestarts;
    public List<FailurePolicyRule> rules;
  }

  @JsonInclude(JsonInclude.Include.NON_NULL)
  @JsonIgnoreProperties(ignoreUnknown = true)
  public static class FailurePolicyRule {
    public String name;
    public String action;
    public List<String> onJobFailureReasons;

    public FailurePolicyRule() {}

    public FailurePolicyRule(String name, String action, List<String> onJobFailureReasons) {
      this.name = name;
      this.action = action;
      this.onJobFailureReasons = onJobFailureReasons;
    }
  }

  @JsonInclude(JsonInclude.Include.NON_NULL)
  @JsonIgnoreProperties(ignoreUnknown = true)
  public static class Status {
    /** Completed, Failed, Suspended, StartupPolicyInProgress... */
    public List<Condition> conditions;
    /** How many times the JobSet controller recreated all its Jobs. */
    public Integer restarts;
    public String terminalState;
  }

  /** The condition of this type with status True. */
  public Optional<Condition> condition(String type) {
    return getStatus() == null || getStatus().conditions == null ? Optional.empty()
        : getStatus().conditions.stream().filter(c -> type.equals(c.getType()) && "True".equals(c.getStatus()))
            .findFirst();
  }

  /** Condition Completed or Failed: the JobSet controller starts no more Jobs for it. */
  public boolean finished() {
    return condition("Completed").isPresent() || condition("Failed").isPresent();
  }

  @Override
  protected Spec initSpec() {
    return new Spec();
  }

  @Override
  protected Status initStatus() {
    return null;
  }
}
