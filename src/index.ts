export * from './client/index.ts'
export { MurmurNode } from './node/node.ts'
export { VERSION } from './version.ts'
