import type { FastifyInstance } from 'fastify'
import { certifiedSettlement, leafToJson, type SettlementSource } from '../state/settlement.ts'
import { ApiError } from './errors.ts'

export type { SettlementSource } from '../state/settlement.ts'

const HEIGHT_RE = /^[0-9]{1,20}$/
const UINT64_MAX = (1n << 64n) - 1n

/**
 * `GET /v1/settlement/:height`: everything a relayer needs to `claim` or `refund` against the block at
 * that height, in the form the contracts take (docs/settlement.md, `CommitProof` and `Leaf`), JSON
 * conventions of INTERFACES.md (big integers as decimal strings; `timeMs` and `timestampMs` are unix
 * milliseconds as numbers):
 * `{height, blockHash, settlementRoot, header, leaves: [{kind, orderId, ..., proof}], certificate: {round,
 * precommits: [{validator, timestampMs, extensionHash, signature}]}, validators, powers}`.
 * 400 MALFORMED for a height that is not a uint64 decimal; 404 NOT_FOUND for a height the node has not
 * committed (0, or above its head). A node stores a block only together with its commit certificate, so a
 * committed height is always certified (its certificate is the one that decided it here; the next block's
 * last commit may carry more precommits, either proves the header); 409 NOT_CERTIFIED is kept for a block
 * without one, and 409 VALIDATOR_SET_UNKNOWN for a block whose signing set the node did not record.
 */
export function settlementRoutes(source: SettlementSource) {
  return (app: FastifyInstance): void => {
    app.get<{ Params: { height: string } }>('/v1/settlement/:height', async (req) => {
      const raw = req.params.height
      if (!HEIGHT_RE.test(raw) || BigInt(raw) > UINT64_MAX)
        throw new ApiError(400, 'MALFORMED', 'height must be a decimal uint64')
      const height = BigInt(raw)
      const r = await certifiedSettlement(source, height)
      if (!r.ok) throw new ApiError(r.code === 'NOT_FOUND' ? 404 : 409, r.code, r.message)
      const { block, hash, tree, proof } = r.value
      const h = proof.header
      return {
        height: raw,
        blockHash: hash,
        settlementRoot: block.settlementRoot,
        header: {
          height: h.height.toString(),
          round: h.round,
          timeMs: Number(h.timeMs),
          proposer: h.proposer,
          parentHash: h.parentHash,
          bodyHash: h.bodyHash,
          settlementRoot: h.settlementRoot,
          validatorsHash: h.validatorsHash,
          nextValidatorsHash: h.nextValidatorsHash,
        },
        leaves: tree.leaves.map((l, i) => ({ ...leafToJson(l), proof: tree.proof(i) })),
        certificate: {
          round: proof.certificate.round,
          precommits: proof.certificate.precommits.map((p) => ({
            validator: p.validator,
            timestampMs: Number(p.timestampMs),
            extensionHash: p.extensionHash,
            signature: p.signature,
          })),
        },
        validators: proof.validators,
        powers: proof.powers.map(String),
      }
    })
  }
}
