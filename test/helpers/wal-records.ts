/** WAL records for the WAL tests and their child writer: deterministic, so both sides agree on them. */
import type { Hex } from 'viem'
import type { WalRecord } from '../../src/consensus/types.ts'

export const walTestFrom = `0x${'ab'.repeat(20)}`
export const walTestSignature = `0x${'11'.repeat(65)}` as Hex
const VALUE = `0x${'cd'.repeat(32)}`

/** A vote of this node: prevotes nil, precommits VALUE. */
export function walTestVote(height: number, round: number, kind: 'prevote' | 'precommit'): WalRecord {
  return {
    type: 'vote',
    vote: { kind, height, round, value: kind === 'prevote' ? null : VALUE, from: walTestFrom },
  }
}

/** A proposal of VALUE. */
export function walTestProposal(height: number, round: number): WalRecord {
  return { type: 'proposal', proposal: { height, round, value: VALUE, validRound: -1, from: walTestFrom } }
}

/** A 17 KB block body (the size of a block with 25 assignments) whose bytes depend on `seed`. */
export function walTestBlock(seed: number, size = 17_000): Uint8Array {
  const b = new Uint8Array(size)
  for (let i = 0; i < size; i++) b[i] = (seed * 31 + i) & 0xff
  return b
}
