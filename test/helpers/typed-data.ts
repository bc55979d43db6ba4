/** fast-check arbitraries for EIP-712 typed data (values of any field type, as viem accepts them). */
import fc from 'fast-check'
import { getAddress, type Hex, type TypedData } from 'viem'

export const toHex = (b: Uint8Array): Hex => `0x${Buffer.from(b).toString('hex')}`
export const bytesArb = (len: number) => fc.uint8Array({ minLength: len, maxLength: len }).map(toHex)

/** Lowercase or EIP-55 checksummed. */
export const addressArb = fc
  .tuple(bytesArb(20), fc.boolean())
  .map(([a, checksummed]) => (checksummed ? getAddress(a) : a))

function integerArb(signed: boolean, bits: number): fc.Arbitrary<bigint | number> {
  const max = (1n << BigInt(signed ? bits - 1 : bits)) - 1n
  const min = signed ? -max - 1n : 0n
  const big = fc.oneof(fc.bigInt({ min, max }), fc.constantFrom(min, max, 0n, 1n))
  const safe = BigInt(Number.MAX_SAFE_INTEGER)
  const numMax = Number(max < safe ? max : safe)
  const numMin = Number(min > -safe ? min : -safe)
  return fc.oneof(big, fc.integer({ min: Math.max(numMin, -(2 ** 31)), max: Math.min(numMax, 2 ** 31 - 1) }))
}

/** Random values of `type`, as viem's `hashTypedData` accepts them. */
export function valueArb(type: string, types: TypedData): fc.Arbitrary<unknown> {
  const array = /^(.*)\[([0-9]*)\]$/.exec(type)
  if (array !== null) {
    const n = array[2] === '' ? undefined : Number(array[2])
    return fc.array(
      valueArb(array[1]!, types),
      n === undefined ? { maxLength: 4 } : { minLength: n, maxLength: n },
    )
  }
  const struct = types[type]
  if (struct !== undefined) {
    const fields: Record<string, fc.Arbitrary<unknown>> = {}
    for (const f of struct) fields[f.name] = valueArb(f.type, types)
    return fc.record(fields)
  }
  if (type === 'address') return addressArb
  if (type === 'bool') return fc.boolean()
  if (type === 'string') return fc.oneof(fc.string(), fc.string({ unit: 'binary', maxLength: 40 }))
  if (type === 'bytes')
    return fc.oneof(fc.uint8Array({ maxLength: 80 }).map(toHex), fc.uint8Array({ maxLength: 80 }))
  const bytesN = /^bytes([0-9]+)$/.exec(type)
  if (bytesN !== null) return bytesArb(Number(bytesN[1]))
  const int = /^(u?int)([0-9]+)$/.exec(type)
  if (int !== null) return integerArb(int[1] === 'int', Number(int[2]))
  throw new Error(`no arbitrary for ${type}`)
}
