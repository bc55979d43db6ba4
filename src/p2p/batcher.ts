/**
 * Gossip costs per message (framing, encryption, message ids, scoring, one validation each), so items
 * that appear close together leave together: the first item of a batch starts a `windowMs` timer, and
 * the batch is published when the timer fires or when it holds `max` items. Each `add` resolves when
 * the batch that carried its item was published, and rejects with the publish error.
 */
export class PublishBatcher<T> {
  readonly #opts: { windowMs: number; max: number }
  readonly #publish: (items: T[]) => Promise<unknown>
  #queue: Array<{ item: T; resolve: () => void; reject: (err: Error) => void }> = []
  #timer: NodeJS.Timeout | undefined

  constructor(opts: { windowMs: number; max: number }, publish: (items: T[]) => Promise<unknown>) {
    if (!(opts.windowMs >= 0) || !(opts.max >= 1)) throw new RangeError('windowMs >= 0 and max >= 1')
    this.#opts = opts
    this.#publish = publish
  }

  /** Items waiting for their batch. */
  get waiting(): number {
    return this.#queue.length
  }

  add(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject })
      if (this.#queue.length >= this.#opts.max) this.flush()
      else this.#timer ??= setTimeout(() => this.flush(), this.#opts.windowMs)
    })
  }

  /** Drops everything waiting (each `add` rejects with `err`) and the timer. */
  cancel(err: Error): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    for (const b of this.#queue.splice(0)) b.reject(err)
  }

  /** Publishes everything waiting now, in batches of at most `max`. */
  flush(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#opts.max)
      this.#publish(batch.map((b) => b.item)).then(
        () => {
          for (const b of batch) b.resolve()
        },
        (err: Error) => {
          for (const b of batch) b.reject(err)
        },
      )
    }
  }
}
