/** Worker thread of {@link RecoverPool}: answers batches of signature recoveries. */
import { parentPort, workerData } from 'node:worker_threads'
import { answerRecoverBatch, type RecoverBackend, type RecoverRequest, setRecoverBackend } from './recover.ts'

const port = parentPort
if (port === null) throw new Error('recover-worker.ts must run in a worker thread')
setRecoverBackend((workerData as { backend: RecoverBackend }).backend)
port.on('message', async (msg: { id: number; requests: RecoverRequest[] }) => {
  port.postMessage({ id: msg.id, replies: await answerRecoverBatch(msg.requests) })
})
