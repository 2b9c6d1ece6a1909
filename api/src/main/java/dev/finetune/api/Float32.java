package dev.finetune.api;

/**
 * CEL rules of the CRD for numbers that training holds in float32: 0, or a normal float32 (the validator's float32
 * check, in its words), so the API server refuses what would silently become 0 or infinity.
 */
final class Float32 {
  private Float32() {}

  static final String RULE = "self == 0.0 || (self >= 1.1754943508222875e-38 && self <= 3.4028234663852886e38)";
  /** Start of the message expression; then the typical value, {@link #LARGE}, the typical value, {@link #END}. */
  static final String SMALL = "(self < 1.0 ? 'is %s, too small for float32, where training computes (the smallest normal"
      + " float32 is 1.2e-38; this would be 0 or lose its precision); typical: ";
  static final String LARGE = "' : 'is %s, too large for float32 (at most 3.4e38); typical: ";
  static final String END = "').format([self])";
}
