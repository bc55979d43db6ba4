/**
 * Gossip validation results. Validators mark each check:
 * - ACCEPT: deliver and forward;
 * - IGNORE: stale, duplicate, not yet useful: drop without penalty;
 * - REJECT: malformed, bad signature, provably wrong: drop and lower the sender's score.
 * Every result carries a bounded `code` used as a metric label.
 */
export type ValidationResult =
  | { readonly result: 'ACCEPT' }
  | { readonly result: 'IGNORE'; readonly code: string }
  | { readonly result: 'REJECT'; readonly code: string }

export const ACCEPT: ValidationResult = Object.freeze({ result: 'ACCEPT' })
export const ignore = (code: string): ValidationResult => ({ result: 'IGNORE', code })
export const reject = (code: string): ValidationResult => ({ result: 'REJECT', code })
