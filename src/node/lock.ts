import { open, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigError } from '../errors.ts'

export const LOCK_FILE = 'murmur.lock'

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * An exclusive lock on a data dir: a file created with O_EXCL holding the owner's pid.
 * A lock left by a dead process (kill -9) is taken over; a live owner gives DATA_DIR_LOCKED.
 * LevelDB's own LOCK is a second guard behind this one.
 */
export class DataDirLock {
  readonly path: string
  #held = false

  constructor(dataDir: string) {
    this.path = join(dataDir, LOCK_FILE)
  }

  async acquire(): Promise<void> {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(this.path, 'wx', 0o600)
        await fh.writeFile(`${process.pid}\n`)
        await fh.close()
        this.#held = true
        return
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      const owner = Number.parseInt((await readFile(this.path, 'utf8').catch(() => '')).trim(), 10)
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
        throw new ConfigError(
          'DATA_DIR_LOCKED',
          `data dir ${join(this.path, '..')} is in use by another murmur node (pid ${owner}); ` +
            'stop it or use another --data-dir',
        )
      }
      // Stale lock from a process that died without cleaning up.
      await rm(this.path, { force: true })
    }
    throw new ConfigError('DATA_DIR_LOCKED', `could not take the lock ${this.path}`)
  }

  async release(): Promise<void> {
    if (!this.#held) return
    this.#held = false
    await rm(this.path, { force: true })
  }
}
