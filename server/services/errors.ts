/** An error whose message is meant for the user; routers map it to a tRPC error code. */
export class UserError extends Error {
  constructor(
    public readonly code: "BAD_REQUEST" | "NOT_FOUND" | "FORBIDDEN" | "CONFLICT" | "UNPROCESSABLE_CONTENT" | "PAYMENT_REQUIRED" | "UNAUTHORIZED" | "TOO_MANY_REQUESTS" | "PAYLOAD_TOO_LARGE" | "SERVICE_UNAVAILABLE",
    message: string,
  ) {
    super(message);
    this.name = "UserError";
  }
}
