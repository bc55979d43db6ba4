import { type Codec, cborCodec, shape } from '../codec/cbor.ts'
import type { ProtocolSpec } from './reqresp.ts'

/** A peer we know and how to reach it; exchanged in `status` so peers learn the network. */
export interface PeerAddrs {
  peerId: string
  addrs: string[]
}

export interface StatusRequest {
  /** The asker's own status (so one exchange informs both sides). */
  height: number
}

export interface StatusResponse {
  peerId: string
  networkId: string
  version: string
  height: number
  blockHash: string
  /** A sample of peers the answerer is connected to, for peer exchange. */
  peers: PeerAddrs[]
}

const MAX_PEERS_IN_STATUS = 32

const statusRequestCodec: Codec<StatusRequest> = cborCodec({
  version: 1,
  maxBytes: 64,
  check(v) {
    const o = shape.object(v, 'status request')
    return { height: shape.int(o['height'], 'height') }
  },
})

const statusResponseCodec: Codec<StatusResponse> = cborCodec({
  version: 1,
  maxBytes: 32 * 1024,
  check(v) {
    const o = shape.object(v, 'status')
    return {
      peerId: shape.string(o['peerId'], 'peerId', 128),
      networkId: shape.string(o['networkId'], 'networkId', 64),
      version: shape.string(o['version'], 'version', 32),
      height: shape.int(o['height'], 'height'),
      blockHash: shape.string(o['blockHash'], 'blockHash', 66),
      peers: shape.array(o['peers'], 'peers', MAX_PEERS_IN_STATUS).map((p, i) => {
        const po = shape.object(p, `peers[${i}]`)
        return {
          peerId: shape.string(po['peerId'], `peers[${i}].peerId`, 128),
          addrs: shape.array(po['addrs'], `peers[${i}].addrs`, 8).map((a) => shape.string(a, 'addr', 256)),
        }
      }),
    }
  },
})

export const STATUS_PROTOCOL: ProtocolSpec<StatusRequest, StatusResponse> = {
  name: 'status',
  request: statusRequestCodec,
  response: statusResponseCodec,
  timeoutMs: 5_000,
  maxInboundStreams: 4,
}

export { MAX_PEERS_IN_STATUS }
