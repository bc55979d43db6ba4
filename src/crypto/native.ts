/**
 * The native libsecp256k1 binding (the `secp256k1` package's prebuilt N-API addon), loaded once and
 * shared by address recovery (recover.ts) and signing (sign.ts).
 */
import { createRequire } from 'node:module'

/** The functions of the binding Murmur uses. */
export interface NativeSecp256k1 {
  ecdsaRecover(sig: Uint8Array, recid: number, msg32: Uint8Array, compressed?: boolean): Uint8Array
  ecdsaSign(msg32: Uint8Array, privateKey: Uint8Array): { signature: Uint8Array; recid: number }
}

let native: NativeSecp256k1 | undefined
let loadError: unknown
let tried = false

/** The binding, or undefined when it cannot load (see {@link nativeLoadError}). */
export function loadNativeSecp256k1(): NativeSecp256k1 | undefined {
  if (!tried) {
    tried = true
    try {
      // `secp256k1/bindings` only loads the prebuilt N-API addon; `secp256k1` itself would silently fall
      // back to the slow `elliptic` package.
      native = createRequire(import.meta.url)('secp256k1/bindings') as NativeSecp256k1
    } catch (err) {
      loadError = err
    }
  }
  return native
}

/** Why the binding did not load, if it did not. */
export function nativeLoadError(): unknown {
  return loadError
}

/** `MURMUR_PURE_JS_CRYPTO=1` starts recovery and signing on their pure-JS backends. */
export const PURE_JS_AT_START = process.env['MURMUR_PURE_JS_CRYPTO'] === '1'
