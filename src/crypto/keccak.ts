import { keccak_256 } from '@noble/hashes/sha3.js'
import { createKeccak } from 'hash-wasm'

/**
 * keccak256 on the hot path (intent ids, address derivation). hash-wasm's WebAssembly keccak is about
 * 5x faster than the pure-JS one on this machine (2 us against 10 us for 320 bytes; see
 * docs/decisions.md); when WebAssembly cannot load, the pure-JS keccak from @noble/hashes is used.
 */
type Hasher = Awaited<ReturnType<typeof createKeccak>>

let wasm: Hasher | undefined
try {
  wasm = await createKeccak(256)
} catch {
  wasm = undefined
}

/** keccak256 of `data`, as 32 bytes. Synchronous. */
export function keccak256Bytes(data: Uint8Array): Uint8Array {
  if (wasm === undefined) return keccak_256(data)
  wasm.init()
  wasm.update(data)
  return wasm.digest('binary')
}

export function keccakBackend(): 'wasm' | 'js' {
  return wasm === undefined ? 'js' : 'wasm'
}
