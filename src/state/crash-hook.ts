/**
 * Test-only crash points (issue 13, item 5): `MURMUR_TEST_CRASH_AT=commit:0.05,fill:0.1` makes the
 * process SIGKILL itself, with that probability, each time it passes the named point. A kill from
 * outside at a random moment almost never lands inside a block commit or between an executor's
 * durable record and its transaction; these do, so the crash soak (scripts/soak-crash.ts) can show that
 * a restart loses nothing there either.
 *
 * Read once, at the first call. Unset (every real deployment), {@link crashPoint} is one map lookup that
 * finds nothing. Before dying it writes one line to stderr (the node's log), so a run can count where
 * its nodes died.
 */
import { writeSync } from 'node:fs'

/** The environment variable of the crash points. */
export const CRASH_ENV = 'MURMUR_TEST_CRASH_AT'

/**
 * The points the node passes, and where:
 * - `wal`: a vote or proposal is durable in the WAL, not yet sent (consensus/wal.ts);
 * - `commit`: a decided block's intents are in the pool, its batch (block, state, pruned WAL) not yet
 *   written (app/application.ts);
 * - `committed`: the batch is written, the head has not moved and no listener heard of it
 *   (consensus/driver.ts);
 * - `fill`, `open`, `claim`, `refund`, `approve`, `rotate`: an executor's transaction of that kind is
 *   durable as `sending`, before it is sent, and again once the RPC took it, before the record says
 *   so (rollups/executor.ts).
 */
export const CRASH_POINTS = [
  'wal',
  'commit',
  'committed',
  'fill',
  'open',
  'claim',
  'refund',
  'approve',
  'refund-expired',
  'rotate',
] as const
export type CrashPointName = (typeof CRASH_POINTS)[number]

/**
 * Parses `point:probability,...`. Throws on an unknown point or a probability outside [0, 1]: a typo
 * must not turn a soak into a run without faults.
 */
export function parseCrashSpec(spec: string): Map<CrashPointName, number> {
  const out = new Map<CrashPointName, number>()
  for (const part of spec.split(',')) {
    const item = part.trim()
    if (item === '') continue
    const [name, p] = item.split(':')
    const prob = Number(p)
    if (!(CRASH_POINTS as readonly string[]).includes(name ?? '') || !(prob >= 0 && prob <= 1))
      throw new Error(
        `${CRASH_ENV}: bad item "${item}" (want point:probability, point one of ${CRASH_POINTS.join(', ')})`,
      )
    out.set(name as CrashPointName, prob)
  }
  return out
}

let points: Map<CrashPointName, number> | undefined

/** Kills this process with SIGKILL, with the probability `MURMUR_TEST_CRASH_AT` gives `name` (if any). */
export function crashPoint(name: CrashPointName): void {
  points ??= parseCrashSpec(process.env[CRASH_ENV] ?? '')
  const p = points.get(name)
  if (p === undefined || Math.random() >= p) return
  writeSync(2, `${JSON.stringify({ level: 60, msg: 'crash point', point: name, pid: process.pid })}\n`)
  process.kill(process.pid, 'SIGKILL')
}
