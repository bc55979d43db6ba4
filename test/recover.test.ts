import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { computeAddress, SigningKey } from 'ethers'
import fc from 'fast-check'
import type { Hex } from 'viem'
import { afterEach, describe, expect, it } from 'vitest'
import {
  nativeRecoverAvailable,
  RecoverPool,
  RecoverPoolError,
  recoverAddress,
  recoverAddressNative,
  recoverAddressPureJs,
  recoverBackend,
  recoverMemo,
  SignatureError,
  setRecoverBackend,
} from '../src/crypto/recover.ts'

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
const P = (1n << 256n) - (1n << 32n) - 977n
const hex32 = (n: bigint) => n.toString(16).padStart(64, '0')
const toHex = (b: Uint8Array): Hex => `0x${Buffer.from(b).toString('hex')}`

/** A valid private key from 32 random bytes. */
const keyArb = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .map((b) => (BigInt(toHex(b)) % (N - 1n)) + 1n)
  .map((k) => `0x${hex32(k)}` as Hex)
const digestArb = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(toHex)

function signWithEthers(pk: Hex, digest: Hex): { sig: Hex; address: Hex } {
  const sig = new SigningKey(pk).sign(digest).serialized as Hex
  return { sig, address: computeAddress(pk).toLowerCase() as Hex }
}

/** v byte set to `v`. */
function withV(sig: Hex, v: number): Hex {
  return `${sig.slice(0, 130)}${v.toString(16).padStart(2, '0')}` as Hex
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    return `ok:${await p}`
  } catch (err) {
    if (err instanceof SignatureError) return err.code
    throw err
  }
}

function modPow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n
  b %= m
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m
    b = (b * b) % m
    e >>= 1n
  }
  return r
}

/** An r that is no curve point's x coordinate: x^3 + 7 is not a square mod p. */
function offCurveR(): bigint {
  for (let x = 1n; ; x++) if (modPow((x ** 3n + 7n) % P, (P - 1n) / 2n, P) === P - 1n) return x
}

const digest = `0x${'11'.repeat(32)}` as Hex
const good = signWithEthers(`0x${'22'.repeat(32)}`, digest)
const r = BigInt(good.sig.slice(0, 66))
const s = BigInt(`0x${good.sig.slice(66, 130)}`)
const v = Number.parseInt(good.sig.slice(130), 16)
const make = (rr: bigint, ss: bigint, vv: number) =>
  `0x${hex32(rr)}${hex32(ss)}${vv.toString(16).padStart(2, '0')}` as Hex

afterEach(() => {
  setRecoverBackend(nativeRecoverAvailable() ? 'native' : 'js')
})

describe('recoverAddress', () => {
  it('loads the native binding here and uses it by default', () => {
    expect(nativeRecoverAvailable()).toBe(true)
    expect(recoverBackend()).toBe('native')
  })

  it('native and pure-JS recover the signer for random keys and digests, v 27/28 and 0/1', async () => {
    await fc.assert(
      fc.asyncProperty(keyArb, digestArb, async (pk, digest) => {
        const { sig, address } = signWithEthers(pk, digest)
        const v = Number.parseInt(sig.slice(130), 16)
        const bare = withV(sig, v - 27)
        const digestBytes = Buffer.from(digest.slice(2), 'hex')
        expect(recoverAddressNative(digest, sig)).toBe(address)
        expect(recoverAddressNative(digestBytes, bare)).toBe(address)
        expect(await recoverAddressPureJs(digest, sig)).toBe(address)
        expect(await recoverAddressPureJs(digestBytes, Buffer.from(bare.slice(2), 'hex'))).toBe(address)
        expect(await recoverAddress(digest, sig)).toBe(address)
      }),
      { numRuns: 60 },
    )
  })

  it('native and pure-JS agree on arbitrary 65-byte signatures', async () => {
    const sigArb = fc
      .tuple(
        fc.uint8Array({ minLength: 64, maxLength: 64 }),
        fc.constantFrom(0, 1, 27, 28, 2, 29, 255),
        fc.boolean(),
      )
      .map(([rs, v, lowS]) => {
        const b = new Uint8Array(65)
        b.set(rs)
        if (lowS) b[32] = (b[32] ?? 0) & 0x7f // mostly below n/2, so recovery itself is exercised
        b[64] = v
        return toHex(b)
      })
    await fc.assert(
      fc.asyncProperty(digestArb, sigArb, async (digest, sig) => {
        const native = await codeOf(Promise.resolve().then(() => recoverAddressNative(digest, sig)))
        const js = await codeOf(recoverAddressPureJs(digest, sig))
        expect(native).toBe(js)
      }),
      { numRuns: 300 },
    )
  })

  const cases: [string, Hex | Uint8Array, Hex | Uint8Array, string][] = [
    ['64-byte signature', digest, good.sig.slice(0, 130) as Hex, 'BAD_LENGTH'],
    ['66-byte signature', digest, `${good.sig}00` as Hex, 'BAD_LENGTH'],
    ['signature bytes of wrong length', digest, new Uint8Array(64), 'BAD_LENGTH'],
    ['31-byte digest', digest.slice(0, 64) as Hex, good.sig, 'BAD_LENGTH'],
    ['33-byte digest bytes', new Uint8Array(33), good.sig, 'BAD_LENGTH'],
    ['non-hex signature', digest, `0x${'zz'.repeat(65)}` as Hex, 'BAD_ENCODING'],
    ['odd-length signature', digest, `${good.sig}0` as Hex, 'BAD_ENCODING'],
    ['no 0x', digest.slice(2) as Hex, good.sig, 'BAD_ENCODING'],
    ['v = 29', digest, withV(good.sig, 29), 'BAD_RECOVERY_ID'],
    ['v = 2', digest, withV(good.sig, 2), 'BAD_RECOVERY_ID'],
    ['r = 0', digest, make(0n, s, v), 'BAD_SCALAR'],
    ['r = n', digest, make(N, s, v), 'BAD_SCALAR'],
    ['s = 0', digest, make(r, 0n, v), 'BAD_SCALAR'],
    ['high s (EIP-2 malleable twin)', digest, make(r, N - s, v === 27 ? 28 : 27), 'HIGH_S'],
    ['s = n/2 + 1', digest, make(r, (N >> 1n) + 1n, v), 'HIGH_S'],
    ['r not on the curve', digest, make(offCurveR(), s, v), 'RECOVER_FAILED'],
  ]
  it.each(cases)('rejects %s on both backends', async (_name, d, sig, code) => {
    expect(await codeOf(Promise.resolve().then(() => recoverAddressNative(d, sig)))).toBe(code)
    expect(await codeOf(recoverAddressPureJs(d, sig))).toBe(code)
  })

  it('the refused high-s twin is a real signature by the same key', () => {
    // Guards the HIGH_S case above: it is refused by policy (EIP-2), not because it is garbage.
    const lib = createRequire(import.meta.url)('secp256k1/bindings')
    const twin = Buffer.from(make(r, N - s, v).slice(2, 130), 'hex')
    const flipped = v === 27 ? 1 : 0
    const msg = Buffer.from(digest.slice(2), 'hex')
    const pubTwin = lib.ecdsaRecover(twin, flipped, msg, false)
    const pubGood = lib.ecdsaRecover(Buffer.from(good.sig.slice(2, 130), 'hex'), v - 27, msg, false)
    expect(Buffer.from(pubTwin).equals(Buffer.from(pubGood))).toBe(true)
  })

  it('setRecoverBackend switches the active backend', async () => {
    setRecoverBackend('js')
    expect(recoverBackend()).toBe('js')
    expect(await recoverAddress(digest, good.sig)).toBe(good.address)
    expect(await codeOf(recoverAddress(digest, withV(good.sig, 5)))).toBe('BAD_RECOVERY_ID')
    setRecoverBackend('native')
    expect(recoverBackend()).toBe('native')
  })

  it('remembers recovered signers by digest and signature, never failures', async () => {
    const d = `0x${'33'.repeat(32)}` as Hex
    const a = signWithEthers(`0x${'44'.repeat(32)}`, d)
    const b = signWithEthers(`0x${'55'.repeat(32)}`, d)
    const hits = () => recoverMemo().hits
    const h0 = hits()
    expect(await recoverAddress(d, a.sig)).toBe(a.address)
    expect(hits()).toBe(h0)
    expect(await recoverAddress(d, a.sig)).toBe(a.address)
    expect(hits()).toBe(h0 + 1)
    // Same digest, another signature: another signer, not the remembered one.
    expect(await recoverAddress(d, b.sig)).toBe(b.address)
    expect(hits()).toBe(h0 + 1)
    // Signers recovered on the workers are remembered too.
    const pool = new RecoverPool({ size: 1 })
    const e = `0x${'66'.repeat(32)}` as Hex
    const c = signWithEthers(`0x${'77'.repeat(32)}`, e)
    try {
      expect(await pool.recover(e, c.sig)).toBe(c.address)
    } finally {
      await pool.close()
    }
    expect(await recoverAddress(e, c.sig)).toBe(c.address)
    expect(hits()).toBe(h0 + 2)
    // A failure is not remembered: it fails again, the same way.
    const bad = make(r, N - s, v === 27 ? 28 : 27)
    expect(await codeOf(recoverAddress(digest, bad))).toBe('HIGH_S')
    expect(await codeOf(recoverAddress(digest, bad))).toBe('HIGH_S')
    expect(hits()).toBe(h0 + 2)
  })

  it('MURMUR_PURE_JS_CRYPTO=1 selects the pure-JS backend at startup', () => {
    const mod = fileURLToPath(new URL('../src/crypto/recover.ts', import.meta.url))
    const script = `const m = await import(${JSON.stringify(mod)}); console.log(m.recoverBackend(), await m.recoverAddress(${JSON.stringify(digest)}, ${JSON.stringify(good.sig)}))`
    const run = (env: NodeJS.ProcessEnv) =>
      execFileSync(process.execPath, ['--input-type=module', '-e', script], { env, encoding: 'utf8' }).trim()
    expect(run({ ...process.env, MURMUR_PURE_JS_CRYPTO: '1' })).toBe(`js ${good.address}`)
    expect(run({ ...process.env, MURMUR_PURE_JS_CRYPTO: '' })).toBe(`native ${good.address}`)
  })
})

describe('RecoverPool', () => {
  it('recovers batches on worker threads', async () => {
    const pool = new RecoverPool({ size: 2, maxBatch: 16 })
    try {
      const items = Array.from({ length: 100 }, (_, i) => {
        const d = `0x${hex32(BigInt(i) + 1n)}` as Hex
        return { d, ...signWithEthers(`0x${hex32(BigInt(i) * 7919n + 3n)}`, d) }
      })
      const got = await Promise.all(items.map((it) => pool.recover(it.d, it.sig)))
      expect(got).toEqual(items.map((it) => it.address))
      // Signature errors come back as SignatureError with their code.
      const bad = pool.recover(digest, make(r, N - s, v === 27 ? 28 : 27))
      await expect(bad).rejects.toBeInstanceOf(SignatureError)
      await expect(bad).rejects.toMatchObject({ code: 'HIGH_S' })
      expect(pool.queued).toBe(0)
    } finally {
      await pool.close()
    }
  })

  it('works with the pure-JS backend', async () => {
    const pool = new RecoverPool({ size: 1, backend: 'js' })
    try {
      expect(await pool.recover(digest, good.sig)).toBe(good.address)
    } finally {
      await pool.close()
    }
  })

  it('refuses work beyond maxQueued with OVERLOADED', async () => {
    const pool = new RecoverPool({ size: 1, maxQueued: 1 })
    try {
      const first = pool.recover(digest, good.sig)
      await expect(pool.recover(digest, good.sig)).rejects.toMatchObject({ code: 'OVERLOADED' })
      expect(await first).toBe(good.address)
    } finally {
      await pool.close()
    }
  })

  it('gives up with WORKER_FAILED when workers cannot start, instead of respawning forever', async () => {
    const pool = new RecoverPool({
      size: 1,
      workerUrl: new URL('data:text/javascript,throw new Error("boom")'),
    })
    try {
      await expect(pool.recover(digest, good.sig)).rejects.toMatchObject({ code: 'WORKER_FAILED' })
      const deadline = Date.now() + 20_000
      while (!pool.failed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
      expect(pool.failed).toBe(true)
      await expect(pool.recover(digest, good.sig)).rejects.toMatchObject({ code: 'WORKER_FAILED' })
    } finally {
      await pool.close()
    }
  })

  it('close rejects pending and later work with CLOSED', async () => {
    const pool = new RecoverPool({ size: 1 })
    const pending = pool.recover(digest, good.sig).catch((err: unknown) => err)
    await pool.close()
    const err = await pending
    expect(err).toBeInstanceOf(RecoverPoolError)
    expect(err).toMatchObject({ code: 'CLOSED' })
    await expect(pool.recover(digest, good.sig)).rejects.toMatchObject({ code: 'CLOSED' })
  })
})
