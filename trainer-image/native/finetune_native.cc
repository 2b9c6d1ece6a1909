// The trainer's own native library: the few libtorch calls DJL's PyTorch JNI lacks, on DJL's tensor handles (a
// handle is a heap-allocated torch::Tensor*, as DJL's JNI makes them; results are new ones that DJL's PtNDArray
// takes over and deletes). Java side: dev.finetune.trainer.model.TorchNative. It must be built against the same
// libtorch DJL loads (build.sh). Every entry point turns a C++ exception into a Java RuntimeException: a bad call
// fails the job with a message, it never terminates the JVM.
#include <jni.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <string>
#include <vector>

#ifdef FINETUNE_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#define FT_HAS_SDPA (TORCH_VERSION_MAJOR >= 2)
#define FT_HAS_FUSED_ADAMW (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1))

namespace {

torch::Tensor& T(jlong handle) { return *reinterpret_cast<torch::Tensor*>(handle); }

jlong Handle(torch::Tensor t) { return reinterpret_cast<jlong>(new torch::Tensor(std::move(t))); }

void Throw(JNIEnv* env, const std::string& what) {
  jclass c = env->FindClass("java/lang/RuntimeException");
  env->ThrowNew(c, ("libtorch: " + what).c_str());
}

template <typename F>
auto Guard(JNIEnv* env, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    Throw(env, e.what_without_backtrace());
  } catch (const std::exception& e) {
    Throw(env, e.what());
  }
  return decltype(f())();
}

std::vector<torch::Tensor> Tensors(JNIEnv* env, jlongArray handles) {
  jsize n = env->GetArrayLength(handles);
  std::vector<jlong> h(n);
  env->GetLongArrayRegion(handles, 0, n, h.data());
  std::vector<torch::Tensor> out;
  out.reserve(n);
  for (jlong x : h) out.push_back(T(x));
  return out;
}

torch::ScalarType Type(jint code) {
  switch (code) {
    case 0: return torch::kFloat32;
    case 1: return torch::kBFloat16;
    default: throw std::invalid_argument("unknown dtype code " + std::to_string(code));
  }
}

}  // namespace

#define FT(ret, name) extern "C" JNIEXPORT ret JNICALL Java_dev_finetune_trainer_model_TorchNative_##name

// "MAJOR.MINOR.PATCH" of the libtorch headers this library was built with.
FT(jstring, torchVersion)(JNIEnv* env, jclass) { return env->NewStringUTF(TORCH_VERSION); }

FT(jboolean, hasAttention)(JNIEnv*, jclass) { return FT_HAS_SDPA ? JNI_TRUE : JNI_FALSE; }

FT(jboolean, hasFusedAdamW)(JNIEnv*, jclass) { return FT_HAS_FUSED_ADAMW ? JNI_TRUE : JNI_FALSE; }

// Compute capability of CUDA device 0 as major * 10 + minor (90 for H100/H200); -1 without CUDA.
FT(jint, cudaCapability)(JNIEnv* env, jclass) {
  return Guard(env, [&]() -> jint {
#ifdef FINETUNE_CUDA
    if (torch::cuda::is_available()) {
      auto* p = at::cuda::getDeviceProperties(0);
      return p->major * 10 + p->minor;
    }
#endif
    return -1;
  });
}

FT(jstring, cudaDeviceName)(JNIEnv* env, jclass) {
  std::string name;
#ifdef FINETUNE_CUDA
  try {
    if (torch::cuda::is_available()) name = at::cuda::getDeviceProperties(0)->name;
  } catch (const std::exception&) {
  }
#endif
  return env->NewStringUTF(name.c_str());
}

// TF32 for fp32 matmuls and convolutions (torch.backends.cuda.matmul.allow_tf32 / cudnn.allow_tf32).
FT(void, allowTf32)(JNIEnv* env, jclass, jboolean on) {
  Guard(env, [&]() -> int {
    at::globalContext().setAllowTF32CuBLAS(on == JNI_TRUE);
    at::globalContext().setAllowTF32CuDNN(on == JNI_TRUE);
    return 0;
  });
}

// A cast that stays on the autograd graph (DJL's toType runs under NoGradGuard and cuts it): gradients of the
// result flow back to the source in its own dtype, as autocast's casts of fp32 master weights do.
FT(jlong, cast)(JNIEnv* env, jclass, jlong x, jint dtype) {
  return Guard(env, [&]() { return Handle(T(x).to(Type(dtype))); });
}

// GPT-2's tanh GELU in one kernel.
FT(jlong, geluTanh)(JNIEnv* env, jclass, jlong x) {
  return Guard(env, [&]() { return Handle(at::gelu(T(x), "tanh")); });
}

// Mean cross-entropy of logits [..., V] against targets [...] (int64), ignoring -100, in fp32 whatever the
// logits' dtype (autocast runs the loss in fp32). A batch with no target gives 0, as the trainer's own loss does.
FT(jlong, crossEntropy)(JNIEnv* env, jclass, jlong logits, jlong targets) {
  return Guard(env, [&]() {
    auto& l = T(logits);
    auto flat = l.reshape({-1, l.size(-1)}).to(torch::kFloat32);
    auto y = T(targets).reshape({-1});
    auto sum = at::cross_entropy_loss(flat, y, {}, at::Reduction::Sum, -100);
    auto count = y.ne(-100).sum().clamp_min(1).to(torch::kFloat32);
    return Handle(sum / count);
  });
}

// Causal scaled-dot-product attention of q, k, v [B, H, T, hd] (flash or memory-efficient kernels on GPUs: the
// T x T matrix is never materialised). PyTorch 2.0 and later.
FT(jlong, causalAttention)(JNIEnv* env, jclass, jlong q, jlong k, jlong v, jdouble dropout) {
  return Guard(env, [&]() -> jlong {
#if FT_HAS_SDPA
    return Handle(at::scaled_dot_product_attention(T(q), T(k), T(v), {}, dropout, true));
#else
    throw std::runtime_error("scaled_dot_product_attention needs libtorch 2.0 or later, this is " TORCH_VERSION);
#endif
  });
}

// PyTorch's fused AdamW (torch.optim.AdamW(fused=True)) over all parameters at once, in place: decoupled weight
// decay, bias correction at step `step` (the step being taken, from 1). PyTorch 2.1 and later.
FT(void, fusedAdamW)(JNIEnv* env, jclass, jlongArray params, jlongArray grads, jlongArray m, jlongArray v,
                     jdouble lr, jdouble beta1, jdouble beta2, jdouble weightDecay, jdouble eps, jlong step) {
  Guard(env, [&]() -> int {
#if FT_HAS_FUSED_ADAMW
    torch::NoGradGuard noGrad;
    auto p = Tensors(env, params);
    auto g = Tensors(env, grads);
    auto mt = Tensors(env, m);
    auto vt = Tensors(env, v);
    if (p.empty()) return 0;
    auto s = torch::full({}, static_cast<double>(step), torch::dtype(torch::kFloat32).device(p[0].device()));
    std::vector<torch::Tensor> steps(p.size(), s);
    at::_fused_adamw_(p, g, mt, vt, {}, steps, lr, beta1, beta2, weightDecay, eps, false, false);
    return 0;
#else
    throw std::runtime_error("_fused_adamw_ needs libtorch 2.1 or later, this is " TORCH_VERSION);
#endif
  });
}
