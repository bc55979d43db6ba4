/**
 * Downtime (Cosmos x/slashing, BeginBlocker's HandleValidatorSignature): a missed-blocks window per
 * validator over the commits blocks carry. Block H's last commit tells who signed H - 1: each validator
 * of the set that decided H - 1 (`commitPowers`) that is neither jailed nor tombstoned has H - 1 recorded
 * as signed or missed. With at least a full window recorded since its last reset, a validator that signed
 * fewer than `minSignedPerWindowBps` of the window is jailed for `downtimeJailSec` (state/apply.ts), and
 * its window starts again (also when it is unjailed or tombstoned). Pure, integer arithmetic.
 */
import type { Address } from 'viem'
import type { CommitCertificate } from '../consensus/block.ts'
import { type AppParams, type AppState, cmp, type MissedWindow } from './types.ts'

/** A window with nothing recorded. */
export function emptyWindow(windowBlocks: number): MissedWindow {
  return { recorded: 0, missed: 0, bits: new Uint8Array(Math.ceil(windowBlocks / 8)) }
}

/** `w` with one more height recorded (the oldest one in the window leaves it). */
export function recordHeight(w: MissedWindow, windowBlocks: number, missed: boolean): MissedWindow {
  const i = w.recorded % windowBlocks
  const byte = i >> 3
  const mask = 1 << (i & 7)
  const wasMissed = (w.bits[byte]! & mask) !== 0
  if (wasMissed === missed) return { ...w, recorded: w.recorded + 1 }
  const bits = new Uint8Array(w.bits)
  bits[byte] = missed ? bits[byte]! | mask : bits[byte]! & ~mask
  return { recorded: w.recorded + 1, missed: w.missed + (missed ? 1 : -1), bits }
}

/** A full window in which fewer than `minSignedPerWindowBps` of the heights were signed. */
export function belowMinimum(w: MissedWindow, params: AppParams): boolean {
  const n = BigInt(params.signedBlocksWindow)
  if (BigInt(w.recorded) < n) return false
  return (n - BigInt(w.missed)) * 10_000n < BigInt(params.minSignedPerWindowBps) * n
}

/** The windows once a block's last commit is recorded, and who they jail (address order). */
export interface LivenessUpdate {
  readonly liveness: ReadonlyMap<Address, MissedWindow>
  readonly downtime: readonly Address[]
}

/** Records `lastCommit` (carried by block `state.height + 1`; null at height 1: nothing to record). */
export function livenessAfter(state: AppState, lastCommit: CommitCertificate | null): LivenessUpdate {
  if (lastCommit === null) return { liveness: state.liveness, downtime: [] }
  const windowBlocks = state.params.signedBlocksWindow
  const signed = new Set<string>(lastCommit.precommits.map((p) => p.validator))
  const status = new Map(state.validators.map((v) => [v.address, v]))
  const liveness = new Map(state.liveness)
  const downtime: Address[] = []
  for (const address of [...state.commitPowers.keys()].sort(cmp)) {
    const v = status.get(address)
    if (v === undefined || v.jailed || v.tombstoned) continue
    const w = recordHeight(
      liveness.get(address) ?? emptyWindow(windowBlocks),
      windowBlocks,
      !signed.has(address),
    )
    liveness.set(address, w)
    if (belowMinimum(w, state.params)) downtime.push(address)
  }
  return { liveness, downtime }
}
