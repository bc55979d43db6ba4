import { type Level, type Logger, pino } from 'pino'

/** Structured JSON logs; one child logger per module (`log.child({ module })`). */
export function createLogger(opts: { level: Level; file: string | undefined; name?: string }): Logger {
  const destination = pino.destination({ dest: opts.file ?? 2, sync: opts.file === undefined, mkdir: true })
  return pino(
    { level: opts.level, base: { name: opts.name ?? 'murmur' }, timestamp: pino.stdTimeFunctions.isoTime },
    destination,
  )
}
