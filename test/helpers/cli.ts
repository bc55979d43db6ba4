import { spawn } from 'node:child_process'
import { join } from 'node:path'

/** The `murmur` entry point, run with this process's Node (v24). */
export const CLI = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts')

/** What a `murmur` process ended with. */
export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs `murmur ...args` as a process without blocking the event loop (anvils and servers of the test
 * keep serving); SIGKILLed by its own pid if it overruns `timeoutMs`.
 */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 120_000,
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString()
    })
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}
