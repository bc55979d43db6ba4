/**
 * The modes of the test-only `--byzantine` flag and its parser, apart from the misbehaviour itself
 * (node/byzantine.ts), so that the CLI can parse its flags without loading the node.
 */
import { ConfigError } from '../errors.ts'

export const BYZANTINE_MODES = [
  'equivocate',
  'bad-assign',
  'bad-fill',
  'withhold',
  'lie-health',
  'fork-after-restart',
  'withhold-fills',
  'no-fast-settlement',
] as const
export type ByzantineMode = (typeof BYZANTINE_MODES)[number]

/** The environment variable that must be `1` for `--byzantine` to be taken. */
export const BYZANTINE_ENV = 'MURMUR_TEST_BYZANTINE'

/**
 * `--byzantine`'s value: the modes of a comma list. ConfigError BAD_OPTION for an unknown mode, an empty
 * list, or when `MURMUR_TEST_BYZANTINE=1` is not set.
 */
export function parseByzantineModes(
  value: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): ReadonlySet<ByzantineMode> {
  if (env[BYZANTINE_ENV] !== '1')
    throw new ConfigError(
      'BAD_OPTION',
      `--byzantine is a test-only flag: refused unless the environment has ${BYZANTINE_ENV}=1`,
    )
  const modes = new Set<ByzantineMode>()
  for (const part of value.split(',')) {
    const m = part.trim()
    if (m === '') continue
    if (!(BYZANTINE_MODES as readonly string[]).includes(m))
      throw new ConfigError('BAD_OPTION', `--byzantine: unknown mode ${m} (${BYZANTINE_MODES.join(', ')})`)
    modes.add(m as ByzantineMode)
  }
  if (modes.size === 0) throw new ConfigError('BAD_OPTION', '--byzantine: no mode given')
  return modes
}
