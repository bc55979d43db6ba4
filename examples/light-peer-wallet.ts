// A wallet that joins the network as a light libp2p peer and publishes its signed intent straight onto
// the `intents` gossip topic, with no HTTP API in between.
//
//   node examples/light-peer-wallet.ts <networkId> <node multiaddr with /p2p/...> [api URL to follow]
//
// With a devnet running (`npm start`), take the network id from .devnet/run-*/genesis.json and a
// node's multiaddr from .devnet/devnet.json.
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { LightPeer, MurmurClient, signOrder } from '../src/client/index.ts'

const [networkId, node, api] = process.argv.slice(2)
if (networkId === undefined || node === undefined) {
  console.error('usage: node examples/light-peer-wallet.ts <networkId> <node multiaddr> [api URL]')
  process.exit(2)
}
const account = privateKeyToAccount(generatePrivateKey())
const order = MurmurClient.order(account.address, {
  to: account.address,
  amount: 10n ** 15n,
  chains: [901n, 902n],
})
const signature = await signOrder(account, order)

const peer = await LightPeer.connect({ networkId, nodes: [node] })
try {
  const [id] = await peer.publish([{ order, signature }])
  console.log(`published intent ${id} as peer ${peer.libp2p.peerId}`)
  if (api !== undefined) {
    const view = await new MurmurClient(api).waitFor(id!, {
      until: new Set(['pending', 'assigned', 'filled', 'expired', 'failed']),
      timeoutMs: 10_000,
    })
    console.log(`node ${api} holds it: ${view.state}`)
  }
} finally {
  await peer.stop()
}
