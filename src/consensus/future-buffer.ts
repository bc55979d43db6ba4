/**
 * Messages of heights this node has not reached yet, held until their height starts (the Tendermint paper
 * assumes a correct process eventually receives them; gossip delivers each message once). Bounded three
 * ways so that nobody can fill it: total bytes, bytes per sending peer (one peer cannot crowd out the
 * others), and a message count. Admission checks that the message's signer is a validator of the current
 * set before the message takes any space: a non-validator's messages never occupy the buffer.
 */

/** Bounds of a {@link FutureBuffer}. */
export interface FutureBufferOptions {
  /** All buffered messages together, in bytes (as their encoded size). */
  readonly maxBytes: number
  /** What one sending peer's messages may occupy, in bytes. */
  readonly maxBytesPerSender: number
  /** At most this many messages. */
  readonly maxMessages: number
}

/** Defaults: a few heights of a large network's votes and proposals fit; one peer gets a quarter. */
export const DEFAULT_FUTURE_BUFFER_OPTIONS: FutureBufferOptions = {
  maxBytes: 32 * 1024 * 1024,
  maxBytesPerSender: 8 * 1024 * 1024,
  maxMessages: 10_000,
}

/** Why {@link FutureBuffer.add} refused a message (or 'added'). */
export type FutureAdmission = 'added' | 'not-validator' | 'sender-full' | 'full'

interface Held<M> {
  readonly msg: M
  readonly from: string | undefined
  readonly bytes: number
}

/** Stands for messages that came from no peer (fetched by request, or our own). */
const NO_SENDER = '<none>'

/** A bounded buffer of messages by height, with per-sender accounting. */
export class FutureBuffer<M> {
  readonly options: FutureBufferOptions
  readonly #byHeight = new Map<bigint, Held<M>[]>()
  readonly #bySender = new Map<string, number>()
  #bytes = 0
  #count = 0

  constructor(options: Partial<FutureBufferOptions> = {}) {
    this.options = { ...DEFAULT_FUTURE_BUFFER_OPTIONS, ...options }
  }

  /** Messages held. */
  get size(): number {
    return this.#count
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes
  }

  /** Bytes held for one sending peer (undefined: messages that came from no peer). */
  bytesOf(from: string | undefined): number {
    return this.#bySender.get(from ?? NO_SENDER) ?? 0
  }

  /**
   * Holds `msg` of `height` from peer `from`, signed by `signer`, if `isValidator(signer)` and the bounds
   * allow; `bytes` is its encoded size.
   */
  add(
    height: bigint,
    msg: M,
    from: string | undefined,
    signer: string,
    bytes: number,
    isValidator: (address: string) => boolean,
  ): FutureAdmission {
    if (!isValidator(signer)) return 'not-validator'
    const o = this.options
    if (this.#count >= o.maxMessages || this.#bytes + bytes > o.maxBytes) return 'full'
    const sender = from ?? NO_SENDER
    const used = this.#bySender.get(sender) ?? 0
    if (used + bytes > o.maxBytesPerSender) return 'sender-full'
    const list = this.#byHeight.get(height)
    const held = { msg, from, bytes }
    if (list === undefined) this.#byHeight.set(height, [held])
    else list.push(held)
    this.#bySender.set(sender, used + bytes)
    this.#bytes += bytes
    this.#count++
    return 'added'
  }

  /**
   * Removes every message of heights up to `height` and returns those of `height` exactly, in arrival
   * order (older heights are stale: the node has moved past them).
   */
  take(height: bigint): Array<{ msg: M; from: string | undefined }> {
    const out: Array<{ msg: M; from: string | undefined }> = []
    for (const [h, list] of [...this.#byHeight]) {
      if (h > height) continue
      this.#byHeight.delete(h)
      for (const held of list) {
        this.#release(held)
        if (h === height) out.push({ msg: held.msg, from: held.from })
      }
    }
    return out
  }

  /** Drops everything. */
  clear(): void {
    this.#byHeight.clear()
    this.#bySender.clear()
    this.#bytes = 0
    this.#count = 0
  }

  #release(held: Held<M>): void {
    const sender = held.from ?? NO_SENDER
    const left = (this.#bySender.get(sender) ?? 0) - held.bytes
    if (left <= 0) this.#bySender.delete(sender)
    else this.#bySender.set(sender, left)
    this.#bytes -= held.bytes
    this.#count--
  }
}
