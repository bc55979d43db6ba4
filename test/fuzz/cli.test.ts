/**
 * Fuzzing of the `murmur` command line (issue 13, item 6): random argv built from the real command tree
 * (its commands, its flags, random values for them, flags of other commands, flags without values,
 * `--flag=value` forms) and fully random argv, parsed by the real `buildCli()` with each command's
 * action replaced by a recorder (an action would start nodes, write key files or dial RPCs). The
 * property: the parse reaches an action, or ends in commander's usage error (exit code 2 in `main`) with
 * one line on stderr starting `murmur: ` and no stack trace, or in help/version (exit 0). The flag
 * value parsers of src/cli/args.ts and cli.ts are fuzzed directly: a value, or InvalidArgumentError.
 */
import { type Command, CommanderError, InvalidArgumentError } from 'commander'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parseRateLimit } from '../../src/api/limits.ts'
import {
  addressArg,
  bigintArg,
  chainArg,
  chainsArg,
  EXIT_USAGE,
  intArg,
  parseRollup,
} from '../../src/cli/args.ts'
import { buildCli, parseHostPort } from '../../src/cli/cli.ts'
import { ConfigError } from '../../src/errors.ts'
import { record, runs } from './harness.ts'

/** A stack frame line (`    at fn (file.ts:12:5)`), not help text that happens to say "at". */
const STACK_LINE = /^\s+at .*:\d+:\d+\)?$/m

interface Built {
  program: Command
  out: string[]
  err: string[]
  reached: string[]
}

function allCommands(c: Command): Command[] {
  return [c, ...c.commands.flatMap(allCommands)]
}

/** The real command tree; actions record their command instead of running. */
function build(): Built {
  const program = buildCli()
  const b: Built = { program, out: [], err: [], reached: [] }
  for (const c of allCommands(program)) {
    c.configureOutput({ writeOut: (s) => b.out.push(s), writeErr: (s) => b.err.push(s) })
    if ((c as unknown as { _actionHandler: unknown })._actionHandler != null) {
      c.action(() => {
        b.reached.push(c.name())
      })
    }
  }
  return b
}

const tree = build().program
/** Every command path (`['node', 'start']`, ...) and every flag of the tree. */
const PATHS: string[][] = (() => {
  const out: string[][] = []
  const walk = (c: Command, p: string[]) => {
    out.push(p)
    for (const s of c.commands) walk(s, [...p, s.name()])
  }
  walk(tree, [])
  return out
})()
const FLAGS: string[] = [
  ...new Set(
    allCommands(tree).flatMap((c) =>
      c.options.flatMap((o) => [o.long, o.short].filter((f): f is string => f !== undefined)),
    ),
  ),
]

const value = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.constantFrom(
    '',
    '-',
    '--',
    '0',
    '-1',
    '901',
    '901,902',
    '901=http://127.0.0.1:1',
    '1/s',
    'off',
    '127.0.0.1:0',
    '[::1]:99999',
    `0x${'1'.repeat(40)}`,
    `0x${'f'.repeat(64)}`,
    '99999999999999999999999999',
    'NaN',
    '1e3',
    '/ip4/127.0.0.1/tcp/0',
    'x'.repeat(5000),
  ),
  fc.bigInt({ min: -(1n << 80n), max: 1n << 80n }).map(String),
)
const token = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...FLAGS) },
  { weight: 3, arbitrary: value },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...FLAGS), value).map(([f, v]) => `${f}=${v}`) },
  { weight: 1, arbitrary: fc.constantFrom('--help', '-h', '--version', '-V', '--no-such-flag', '-zz') },
)
const argv = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .tuple(fc.constantFrom(...PATHS), fc.array(token, { maxLength: 12 }))
      .map(([p, t]) => [...p, ...t]),
  },
  { weight: 1, arbitrary: fc.array(fc.string({ maxLength: 20 }), { maxLength: 8 }) },
)

describe('murmur argv', () => {
  it('reaches an action, or is a one-line usage error (exit 2) or help (exit 0), never a stack trace', async () => {
    const n = runs(2)
    const t0 = performance.now()
    const outcomes = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(argv, async (args) => {
        const b = build()
        let outcome: string
        try {
          await b.program.parseAsync(args, { from: 'user' })
          expect(b.reached.length, `no action and no error for ${JSON.stringify(args)}`).toBe(1)
          outcome = 'action'
        } catch (err) {
          if (!(err instanceof CommanderError)) {
            throw new Error(`argv ${JSON.stringify(args)} threw ${(err as Error).stack ?? String(err)}`)
          }
          const help =
            err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0
          // main() maps every other CommanderError to EXIT_USAGE; a group command without its
          // subcommand prints its help on stderr (commander.help, exit 1 in commander, 2 in main).
          outcome = help ? 'help' : err.code === 'commander.help' ? 'group help' : 'usage'
          const err2 = b.err.join('')
          expect(err2, JSON.stringify(args)).not.toMatch(STACK_LINE)
          if (outcome === 'usage') {
            expect(err2.trim().split('\n'), `${JSON.stringify(args)}: ${err2}`).toHaveLength(1)
            expect(err2, JSON.stringify(args)).toMatch(/^murmur: /)
          }
        }
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
      }),
      { numRuns: n, timeout: 5_000 },
    )
    record('cli:argv', n, performance.now() - t0)
    if (process.env['FUZZ_VERBOSE'] === '1') console.log(Object.fromEntries(outcomes))
    // The generator reaches both ends: parses that get to an action and usage errors.
    if (n >= 200) {
      expect(outcomes.get('usage') ?? 0).toBeGreaterThan(0)
      expect(outcomes.get('action') ?? 0).toBeGreaterThan(0)
    }
    expect(EXIT_USAGE).toBe(2)
  })

  it('flag value parsers: a value or InvalidArgumentError', () => {
    const parsers: Array<[string, (v: string) => unknown, ReadonlyArray<new (...a: never[]) => Error>]> = [
      ['bigint', bigintArg, [InvalidArgumentError]],
      ['chain', chainArg, [InvalidArgumentError]],
      ['chains', chainsArg, [InvalidArgumentError]],
      ['int', intArg, [InvalidArgumentError]],
      ['address', addressArg, [InvalidArgumentError]],
      ['rollup', (v) => parseRollup(v, new Map()), [InvalidArgumentError]],
      ['host-port', parseHostPort, [InvalidArgumentError]],
      ['rate-limit', parseRateLimit, [ConfigError]],
    ]
    const n = runs(1)
    const t0 = performance.now()
    for (const [name, parse, allowed] of parsers) {
      fc.assert(
        fc.property(value, (v) => {
          try {
            parse(v)
          } catch (err) {
            if (!allowed.some((c) => err instanceof c))
              throw new Error(`${name}(${JSON.stringify(v)}): ${(err as Error).stack}`)
          }
        }),
        { numRuns: n },
      )
    }
    record('cli:values', n * parsers.length, performance.now() - t0)
  })
})
