import { describe, expect, it } from "vitest";
import { classifySubmissionFailure } from "../../runtime/src/outbound/submission-client";

// Error shapes as nodemailer 10 raises them (code, responseCode, response, command).
describe("classifySubmissionFailure", () => {
  it("retries a 4xx and names the server's reply and the stage", () => {
    expect(
      classifySubmissionFailure({
        code: "EENVELOPE",
        responseCode: 451,
        response: "451 4.3.0 <a@b>: Temporary lookup failure",
        command: "RCPT TO",
      }),
    ).toEqual({ permanent: false, description: "server answered 451 4.3.0 <a@b>: Temporary lookup failure (after RCPT)" });
  });

  it("reports a 5xx as permanent, the refused login included", () => {
    expect(
      classifySubmissionFailure({
        code: "EAUTH",
        responseCode: 535,
        response: "535 5.7.8 Error: authentication failed",
        command: "AUTH PLAIN",
      }),
    ).toMatchObject({ permanent: true, description: expect.stringContaining("535 5.7.8") });
  });

  it("retries a temporary AUTH failure (454) despite the EAUTH code", () => {
    expect(
      classifySubmissionFailure({ code: "EAUTH", responseCode: 454, response: "454 4.7.0 Temporary authentication failure" })
        .permanent,
    ).toBe(false);
  });

  it("treats an untrusted certificate and a missing STARTTLS as permanent", () => {
    expect(classifySubmissionFailure({ code: "ESOCKET", message: "self-signed certificate" })).toMatchObject({
      permanent: true,
      description: expect.stringContaining("GATEWAY_POSTFIX_CA_FILE"),
    });
    expect(classifySubmissionFailure({ code: "ETLS", message: "Can't upgrade connection" }).permanent).toBe(true);
  });

  it("retries connection failures", () => {
    expect(classifySubmissionFailure({ code: "ESOCKET", message: "connect ECONNREFUSED 127.0.0.1:587" }).permanent).toBe(false);
    expect(classifySubmissionFailure({ code: "ETIMEDOUT", message: "Connection timeout" }).permanent).toBe(false);
  });
});
