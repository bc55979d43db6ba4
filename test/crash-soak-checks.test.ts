import type { Hex } from 'viem'
import { describe, expect, it } from 'vitest'
import {
  BlockBook,
  type BlockJson,
  checkBlocksKept,
  checkIntentsEverywhere,
  checkNoDoubleFill,
  checkNoDoubleSign,
} from '../devnet/crash-soak-checks.ts'

const H = (c: string) => `0x${c.repeat(64)}`
const V = ['0xa0', '0xa1', '0xa2', '0xa3']

/** Block `height` with hash `hash`, certified at `round` by `signers` (signature per validator by `sig`). */
function block(
  height: number,
  hash: string,
  signers = V,
  round = 0,
  sig = (v: string) => `s-${v}-${height}`,
): BlockJson {
  return {
    height: String(height),
    hash,
    evidence: [],
    lastCommit: null,
    certificate: {
      height: String(height),
      round,
      blockHash: hash,
      precommits: signers.map((v) => ({ validator: v, signature: sig(v) })),
    },
  }
}

const validators = (tombstoned: string[] = []) =>
  [0, 1].map((node) => ({
    node,
    rows: V.map((address) => ({ address, tombstoned: tombstoned.includes(address) })),
  }))

describe('crash soak checks', () => {
  it('no-block-changed: passes when every node serves the recorded hashes, fails on a changed, forked or missing block', () => {
    const book = new BlockBook()
    book.block(block(1, H('1')), 0)
    book.block(block(2, H('2')), 1)
    const same = [0, 1].flatMap((node) =>
      [1, 2].map((height) => ({ node, height, hash: height === 1 ? H('1') : H('2') })),
    )
    expect(checkBlocksKept(book, same).passed).toBe(true)
    // At the end a node serves another block at height 2.
    const changed = same.map((f) => (f.node === 1 && f.height === 2 ? { ...f, hash: H('9') } : f))
    expect(checkBlocksKept(book, changed)).toMatchObject({ passed: false })
    // A node lost a block it had.
    expect(
      checkBlocksKept(
        book,
        same.map((f) => (f.node === 0 && f.height === 1 ? { ...f, hash: null } : f)),
      ).passed,
    ).toBe(false)
    // During the run two nodes served two hashes at one height.
    book.hash(2, H('8'), 3)
    expect(checkBlocksKept(book, same).detail).toMatch(/1 conflicts during the run/)
  })

  it('no-double-sign: fails on precommits for two hashes at one height and round, a second signature, evidence or a tombstone', () => {
    const ok = new BlockBook()
    ok.block(block(5, H('5')), 0)
    ok.block(block(5, H('5')), 1) // the same certificate from another node
    ok.block(block(5, H('5'), V, 1), 2) // another round's certificate for the same block
    expect(checkNoDoubleSign(ok, validators()).passed).toBe(true)

    const fork = new BlockBook()
    fork.block(block(5, H('5')), 0)
    fork.block(block(5, H('6'), [V[0]!, V[1]!, V[2]!]), 1)
    expect(checkNoDoubleSign(fork, validators()).detail).toMatch(/0xa0\/5\/0: precommits for/)

    const resigned = new BlockBook()
    resigned.block(block(5, H('5')), 0)
    resigned.block(
      block(5, H('5'), V, 0, (v) => `other-${v}`),
      1,
    )
    expect(checkNoDoubleSign(resigned, validators()).detail).toMatch(/two signatures/)

    const withEvidence = new BlockBook()
    withEvidence.block({ ...block(7, H('7')), evidence: [{ validator: '0xA3' }] }, 0)
    expect(checkNoDoubleSign(withEvidence, validators()).detail).toMatch(/evidence against 0xa3/)
    expect(checkNoDoubleSign(ok, validators(['0xa2'])).detail).toMatch(/0xa2 is tombstoned/)
    expect(checkNoDoubleSign(ok, [{ node: 0, rows: null }]).passed).toBe(false)
  })

  it('no-double-fill: one OutputFilled per order passes; two (one chain or two) fail', () => {
    const tx = '0x01' as Hex
    const once = new Map([
      ['0x1', [{ chainId: 901, tx }]],
      ['0x2', [{ chainId: 902, tx }]],
    ])
    expect(checkNoDoubleFill(once).passed).toBe(true)
    const twice = new Map([
      ...once,
      [
        '0x3',
        [
          { chainId: 901, tx },
          { chainId: 903, tx },
        ],
      ],
    ])
    expect(checkNoDoubleFill(twice).detail).toMatch(/1 orders filled more than once: 0x3 on 901,903/)
    expect(checkNoDoubleFill(new Map()).passed).toBe(false)
  })

  it('no-lost-intents: every accepted intent known on every node, else the missing ones named', () => {
    const known = (n: number) => [0, 1, 2].map((node) => ({ node, result: node < n ? 'known' : 'missing' }))
    expect(
      checkIntentsEverywhere(
        ['0xa', '0xb'],
        new Map([
          ['0xa', known(3)],
          ['0xb', known(3)],
        ]),
        3,
      ).passed,
    ).toBe(true)
    const one = checkIntentsEverywhere(
      ['0xa', '0xb'],
      new Map([
        ['0xa', known(3)],
        ['0xb', known(2)],
      ]),
      3,
    )
    expect(one.detail).toMatch(
      /1 of 2 accepted intents not known on every node: 0xb \(n0:known n1:known n2:missing\)/,
    )
    expect(checkIntentsEverywhere([], new Map(), 3).passed).toBe(false)
  })
})
