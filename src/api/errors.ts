/** API error codes; the body is always `{error:{code,message}}`. */
export class ApiError extends Error {
  readonly status: number
  readonly code: string
  readonly headers: Record<string, string>
  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message)
    this.status = status
    this.code = code
    this.headers = headers
  }
}

export function errorBody(code: string, message: string) {
  return { error: { code, message } }
}
