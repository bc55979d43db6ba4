import { generateKeyPair, generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { encode as cborEncode } from 'cborg'
import fc from 'fast-check'
import { type Address, type Hex, hashTypedData } from 'viem'
import type { PrivateKeyAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { networkDomain } from '../src/codec/eip712.ts'
import { CodecError } from '../src/codec/json.ts'
import { fastAccount } from '../src/crypto/sign.ts'
import { P2PError } from '../src/errors.ts'
import {
  AccountLedger,
  type AccountState,
  genesisBalances,
  kindFields,
  messageId,
  type SignedTransfer,
  signTransfer,
  TRANSFER_KIND,
  type Transfer,
  validateTransfer,
} from '../src/staking/accounts.ts'
import { DELEGATE_KIND, UNDELEGATE_KIND } from '../src/staking/delegations.ts'
import { CREATE_VALIDATOR_KIND, parsePeerIdBytes, peerIdBytes } from '../src/staking/validators.ts'
import {
  ACCOUNT_MESSAGE_KINDS,
  ACCOUNT_MESSAGE_WIRE_VERSION,
  accountMessageCodec,
  accountMessageFromJson,
  accountMessageToJson,
} from '../src/staking/wire-accounts.ts'

const NETWORK = 'accounts-test'
const key = (i: number): Hex => `0x${(BigInt(i) * 7919n + 13n).toString(16).padStart(64, '0')}`
const ACC: PrivateKeyAccount[] = [1, 2, 3].map((i) => fastAccount(key(i)))
const addr = (a: PrivateKeyAccount) => a.address.toLowerCase() as Address
const [A, B, C] = ACC.map(addr) as [Address, Address, Address]

const state0: AccountState = {
  networkId: NETWORK,
  balances: genesisBalances([
    { address: ACC[0]!.address, balance: 100n },
    { address: ACC[1]!.address, balance: 5n },
  ]),
  accountNonces: new Map(),
}

const transfer = (over: Partial<Transfer> = {}): Transfer => ({
  from: A,
  to: B,
  amount: 10n,
  nonce: 1n,
  ...over,
})
const DUMMY_SIG = `0x${'11'.repeat(65)}` as Hex

describe('EIP-712 types of account messages', () => {
  it('are exactly the INTERFACES.md strings', () => {
    const encodeType = (k: (typeof ACCOUNT_MESSAGE_KINDS)[number]) =>
      `${k.primaryType}(${kindFields(k)
        .map((f) => `${f.type} ${f.name}`)
        .join(',')})`
    expect(ACCOUNT_MESSAGE_KINDS.map(encodeType)).toEqual([
      'Transfer(address from,address to,uint256 amount,uint256 nonce)',
      'Delegate(address delegator,address validator,uint256 chainId,uint256 amount,uint256 nonce)',
      'Undelegate(address delegator,address validator,uint256 chainId,uint256 amount,uint256 nonce)',
      'CreateValidator(address validator,bytes peerId,uint256[] chainIds,uint256 selfStake,uint16 commissionBps,uint256 nonce)',
    ])
    expect(ACCOUNT_MESSAGE_KINDS.map((k) => k.wireKind)).toEqual([0, 1, 2, 3])
  })

  it('ids are viem hashTypedData under the network domain', () => {
    const u256 = fc.bigInt({ min: 0n, max: (1n << 256n) - 1n })
    const address = fc
      .uint8Array({ minLength: 20, maxLength: 20 })
      .map((b) => `0x${Buffer.from(b).toString('hex')}` as Address)
    fc.assert(
      fc.property(
        address,
        address,
        u256,
        u256,
        u256,
        fc.integer({ min: 0, max: 65535 }),
        (a, b, x, y, n, bps) => {
          const cases = [
            [TRANSFER_KIND, { from: a, to: b, amount: x, nonce: n }],
            [DELEGATE_KIND, { delegator: a, validator: b, chainId: y, amount: x, nonce: n }],
            [UNDELEGATE_KIND, { delegator: a, validator: b, chainId: y, amount: x, nonce: n }],
            [
              CREATE_VALIDATOR_KIND,
              { validator: a, peerId: b, chainIds: [x, y], selfStake: x, commissionBps: bps, nonce: n },
            ],
          ] as const
          for (const [kind, message] of cases) {
            const viem = hashTypedData({
              domain: networkDomain(NETWORK),
              types: kind.types,
              primaryType: kind.primaryType,
              message,
            } as never)
            expect(messageId(kind as never, NETWORK, message)).toBe(viem)
          }
        },
      ),
      { numRuns: 30 },
    )
  })
})

describe('transfers', () => {
  it('a signed transfer moves the amount and uses the nonce', async () => {
    const ledger = new AccountLedger(state0)
    const s = await signTransfer(ACC[0]!, NETWORK, transfer())
    const v = await validateTransfer(ledger, s)
    expect(v).toEqual({ ok: true, id: messageId(TRANSFER_KIND, NETWORK, s.transfer) })
    ledger.applyTransfer(s)
    expect([ledger.balance(A), ledger.balance(B)]).toEqual([90n, 15n])
    expect(ledger.nonces.get(A)).toBe(1n)
    expect(ledger.total()).toBe(105n)
    // The state it started from is untouched (copy on write).
    expect(state0.balances.get(A)).toBe(100n)
  })

  it('refuses an over-balance transfer, a replayed nonce, a forged signature, with their codes', async () => {
    const ledger = new AccountLedger(state0)
    const over = await signTransfer(ACC[0]!, NETWORK, transfer({ amount: 101n }))
    expect(await validateTransfer(ledger, over)).toMatchObject({ ok: false, code: 'INSUFFICIENT_BALANCE' })

    const first = await signTransfer(ACC[0]!, NETWORK, transfer({ nonce: 7n }))
    expect((await validateTransfer(ledger, first)).ok).toBe(true)
    ledger.applyTransfer(first)
    for (const nonce of [7n, 3n]) {
      const replay = await signTransfer(ACC[0]!, NETWORK, transfer({ nonce }))
      expect(await validateTransfer(ledger, replay)).toMatchObject({ ok: false, code: 'NONCE_USED' })
    }

    // Signed by C, claiming to be from A; and A's signature over another amount.
    const byOther = await signTransfer(ACC[2]!, NETWORK, transfer({ from: C, nonce: 8n }))
    const forged: SignedTransfer = { transfer: transfer({ nonce: 8n }), signature: byOther.signature }
    expect(await validateTransfer(ledger, forged)).toMatchObject({ ok: false, code: 'BAD_SIGNATURE' })
    const real = await signTransfer(ACC[0]!, NETWORK, transfer({ nonce: 8n }))
    const tampered: SignedTransfer = {
      transfer: transfer({ nonce: 8n, amount: 11n }),
      signature: real.signature,
    }
    expect(await validateTransfer(ledger, tampered)).toMatchObject({ ok: false, code: 'BAD_SIGNATURE' })
    const other = await signTransfer(ACC[0]!, 'other-network', transfer({ nonce: 8n }))
    expect(await validateTransfer(ledger, other)).toMatchObject({ ok: false, code: 'BAD_SIGNATURE' })
    expect((await validateTransfer(ledger, real)).ok).toBe(true)
  })

  it('refuses malformed transfers', () => {
    const ledger = new AccountLedger(state0)
    for (const t of [
      transfer({ amount: 0n }),
      transfer({ to: A }),
      transfer({ to: `0x${'0'.repeat(40)}` }),
      transfer({ to: ACC[1]!.address as Address }), // checksummed: not the lowercase form
      transfer({ amount: 1n << 256n }),
      transfer({ nonce: -1n }),
    ])
      expect(ledger.checkTransfer({ transfer: t, signature: DUMMY_SIG })).toMatchObject({ code: 'MALFORMED' })
    expect(ledger.checkTransfer({ transfer: transfer(), signature: '0x12' })).toMatchObject({
      code: 'MALFORMED',
    })
  })

  it('rate-limits an account to maxMessagesPerBlock messages a block', () => {
    const ledger = new AccountLedger(state0, { maxMessagesPerBlock: 2 }, 1n)
    const t = (nonce: bigint): SignedTransfer => ({
      transfer: transfer({ nonce, amount: 1n }),
      signature: DUMMY_SIG,
    })
    for (const n of [1n, 2n]) {
      expect(ledger.checkTransfer(t(n)).ok).toBe(true)
      ledger.applyTransfer(t(n))
    }
    expect(ledger.checkTransfer(t(3n))).toMatchObject({ ok: false, code: 'RATE_LIMITED' })
    // Another account is not limited by A's messages.
    expect(
      ledger.checkTransfer({ transfer: transfer({ from: B, to: A, amount: 1n }), signature: DUMMY_SIG }).ok,
    ).toBe(true)
    ledger.beginBlock(2n)
    expect(ledger.checkTransfer(t(3n)).ok).toBe(true)
  })

  it('never lets a balance go negative and conserves the total over random transfers', () => {
    const accounts = [A, B, C]
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            from: fc.nat(2),
            to: fc.nat(2),
            amount: fc.bigInt({ min: 0n, max: 150n }),
            replay: fc.boolean(),
            newBlock: fc.boolean(),
          }),
          { maxLength: 60 },
        ),
        (steps) => {
          const ledger = new AccountLedger(state0, { maxMessagesPerBlock: 3 }, 1n)
          let height = 1n
          for (const st of steps) {
            if (st.newBlock) ledger.beginBlock(++height)
            const from = accounts[st.from]!
            const seen = ledger.nonces.has(from)
            const used = ledger.nonces.get(from) ?? 0n
            const t = { from, to: accounts[st.to]!, amount: st.amount, nonce: st.replay ? used : used + 1n }
            const before = ledger.balance(from)
            const v = ledger.checkTransfer({ transfer: t, signature: DUMMY_SIG })
            if (v.ok) ledger.applyTransfer({ transfer: t, signature: DUMMY_SIG })
            // A naive reference of the verdict's reason.
            if (st.amount === 0n || t.from === t.to) expect(v).toMatchObject({ code: 'MALFORMED' })
            else if (st.replay && seen) expect(v).toMatchObject({ code: 'NONCE_USED' })
            else if (!v.ok && v.code === 'RATE_LIMITED') expect(ledger.nonces.get(from) ?? 0n).toBe(used)
            else if (st.amount > before) expect(v).toMatchObject({ code: 'INSUFFICIENT_BALANCE' })
            else expect(v.ok).toBe(true)
            expect(ledger.total()).toBe(105n)
            for (const b of ledger.balances.values()) expect(b > 0n).toBe(true)
          }
        },
      ),
      { numRuns: 200 },
    )
  })
})

describe('peer ids of validator records', () => {
  it('takes the multihash bytes of an Ed25519 peer id, nothing else', async () => {
    const ed = peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(7)))
    const bytes = peerIdBytes(ed.toString())
    expect(parsePeerIdBytes(bytes)).toBe(ed.toString())
    const secp = peerIdFromPrivateKey(await generateKeyPair('secp256k1'))
    expect(parsePeerIdBytes(peerIdBytes(secp.toString()))).toBeUndefined()
    expect(parsePeerIdBytes(`${bytes}00` as Hex)).toBeUndefined()
    expect(parsePeerIdBytes(`0x${'ab'.repeat(38)}`)).toBeUndefined()
    expect(parsePeerIdBytes('0x')).toBeUndefined()
  })
})

describe('wire and JSON forms of account messages', () => {
  const u256 = fc.bigInt({ min: 0n, max: (1n << 256n) - 1n })
  const address = fc
    .uint8Array({ minLength: 20, maxLength: 20 })
    .map((b) => `0x${Buffer.from(b).toString('hex')}` as Address)
  const hex = (n: number) =>
    fc.uint8Array({ minLength: n, maxLength: n }).map((b) => `0x${Buffer.from(b).toString('hex')}` as Hex)
  const delegation = fc.record({
    delegator: address,
    validator: address,
    chainId: u256,
    amount: u256,
    nonce: u256,
  })
  const message = fc.oneof(
    fc.record({
      transfer: fc.record({ from: address, to: address, amount: u256, nonce: u256 }),
      signature: hex(65),
    }),
    fc.record({ delegate: delegation, signature: hex(65) }),
    fc.record({ undelegate: delegation, signature: hex(65) }),
    fc.record({
      createValidator: fc.record({
        validator: address,
        peerId: fc.integer({ min: 0, max: 64 }).chain(hex),
        chainIds: fc.array(u256, { maxLength: 32 }),
        selfStake: u256,
        commissionBps: fc.integer({ min: 0, max: 65535 }),
        nonce: u256,
      }),
      signature: hex(65),
    }),
  )

  it('round-trip every kind through CBOR and JSON', () => {
    fc.assert(
      fc.property(message, (m) => {
        const bytes = accountMessageCodec.encode(m)
        expect(bytes[0]).toBe(ACCOUNT_MESSAGE_WIRE_VERSION)
        expect(bytes.length).toBeLessThanOrEqual(accountMessageCodec.maxBytes)
        expect(accountMessageCodec.decode(bytes)).toEqual(m)
        const kind = ACCOUNT_MESSAGE_KINDS.find((k) => k.key in m)!
        const json = JSON.parse(JSON.stringify(accountMessageToJson(m)))
        expect(accountMessageFromJson(kind, json)).toEqual(m)
      }),
      { numRuns: 200 },
    )
  })

  it('JSON has bigints as decimal strings and basis points as a number', () => {
    const m = {
      createValidator: {
        validator: A,
        peerId: '0x0102' as Hex,
        chainIds: [901n],
        selfStake: 5n,
        commissionBps: 250,
        nonce: 1n,
      },
      signature: DUMMY_SIG,
    }
    expect(accountMessageToJson(m)).toEqual({
      createValidator: {
        validator: A,
        peerId: '0x0102',
        chainIds: ['901'],
        selfStake: '5',
        commissionBps: 250,
        nonce: '1',
      },
      signature: DUMMY_SIG,
    })
    const bad = (over: Record<string, unknown>) => ({
      transfer: { from: A, to: B, amount: '1', nonce: '1', ...over },
      signature: DUMMY_SIG,
    })
    for (const body of [bad({ amount: 1 }), bad({ amount: '01' }), bad({ extra: '1' }), bad({ to: 'x' })])
      expect(() => accountMessageFromJson(TRANSFER_KIND as never, body)).toThrow(CodecError)
  })

  it('refuse bytes that are not a message', () => {
    const m = { transfer: transfer(), signature: DUMMY_SIG }
    const good = accountMessageCodec.encode(m)
    const wrongVersion = Uint8Array.from(good)
    wrongVersion[0] = 2
    const decodeCode = (b: Uint8Array) => {
      try {
        accountMessageCodec.decode(b)
        return 'decoded'
      } catch (e) {
        return e instanceof P2PError ? e.code : String(e)
      }
    }
    expect(decodeCode(wrongVersion)).toBe('DECODE')
    expect(decodeCode(good.subarray(0, good.length - 1))).toBe('DECODE')
    expect(decodeCode(new Uint8Array(2000))).toBe('TOO_LARGE')
    // A kind that does not exist, a key too many, a missing key, an integer with a leading zero.
    const raw = (o: Record<string, unknown>) =>
      Uint8Array.from([ACCOUNT_MESSAGE_WIRE_VERSION, ...cborEncode(o)])
    const fields = {
      k: 0,
      from: Buffer.from(A.slice(2), 'hex'),
      to: Buffer.from(B.slice(2), 'hex'),
      amount: Uint8Array.of(10),
      nonce: Uint8Array.of(1),
      sig: Buffer.from(DUMMY_SIG.slice(2), 'hex'),
    }
    expect(accountMessageCodec.decode(raw(fields))).toEqual(m)
    expect(decodeCode(raw({ ...fields, k: 9 }))).toBe('DECODE')
    expect(decodeCode(raw({ ...fields, extra: 1 }))).toBe('DECODE')
    const { nonce: _, ...noNonce } = fields
    expect(decodeCode(raw(noNonce))).toBe('DECODE')
    expect(decodeCode(raw({ ...fields, amount: Uint8Array.of(0, 10) }))).toBe('DECODE')
    expect(() =>
      accountMessageCodec.encode({ transfer: transfer({ amount: -1n }), signature: DUMMY_SIG }),
    ).toThrow(/amount/)
  })
})
