/**
 * One error base class with a typed `code`; one subclass per domain.
 * Tests assert on `code`, never on message text. Programmer errors stay plain `Error`.
 */
export class MurmurError<C extends string = string> extends Error {
  readonly code: C
  constructor(code: C, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

export type ConfigErrorCode = 'BAD_OPTION' | 'DATA_DIR_LOCKED' | 'BAD_GENESIS' | 'BAD_KEY'
/** Bad configuration: options, genesis, keys, data dir. */
export class ConfigError extends MurmurError<ConfigErrorCode> {}

export type StorageErrorCode = 'WRITE_FAILED' | 'CORRUPT' | 'WAL_FULL' | 'WAL_CONFLICT'
/** A durable write failed or stored data does not decode. A failed write stops the node. */
export class StorageError extends MurmurError<StorageErrorCode> {}

export type P2PErrorCode = 'TOO_LARGE' | 'DECODE' | 'TIMEOUT' | 'UNKNOWN_PROTOCOL' | 'REMOTE_ERROR' | 'DENIED'
/** Network failures of our own protocols. */
export class P2PError extends MurmurError<P2PErrorCode> {}
