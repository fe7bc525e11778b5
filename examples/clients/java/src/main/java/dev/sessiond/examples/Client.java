package dev.sessiond.examples;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import dev.sessiond.v1.ClientInfo;
import dev.sessiond.v1.InvalidReason;
import dev.sessiond.v1.IssueRequest;
import dev.sessiond.v1.IssueResponse;
import dev.sessiond.v1.ListRequest;
import dev.sessiond.v1.ListResponse;
import dev.sessiond.v1.RevokeRequest;
import dev.sessiond.v1.RevokeResponse;
import dev.sessiond.v1.Session;
import dev.sessiond.v1.ValidateRequest;
import dev.sessiond.v1.ValidateResponse;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.protobuf.StatusProto;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.TimeUnit;

/**
 * A sessiond client in Java (grpc-java): one session's life, and one refusal decoded.
 *
 * <p>Waits until the server reports SERVING, issues a session, validates it, lists it, revokes
 * it, validates it again (REVOKED), and reads the {@code google.rpc.ErrorInfo} of an
 * INVALID_ARGUMENT. Prints one line per check and exits 1 at the first mismatch.
 *
 * <pre>SESSIOND_ADDR=127.0.0.1:50051 java -jar target/sessiond-example-client.jar</pre>
 */
public final class Client {
  private static final String SERVICE = "sessiond.v1.SessionService";
  private static final String USER = "example-java";
  // Every call is bounded, and so is the wait for SERVING.
  private static final long CALL_TIMEOUT_SECONDS = 10;
  private static final long READY_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(30);

  /** A mismatch between what the server answered and what the contract says. */
  private static final class CheckFailed extends Exception {
    CheckFailed(String message) {
      super(message);
    }
  }

  private Client() {}

  private static void check(String name, boolean ok, String detail) throws CheckFailed {
    if (!ok) {
      throw new CheckFailed(name + ": " + detail);
    }
    System.out.println("ok   " + name + ": " + detail);
  }

  /** Polls grpc.health.v1 until SERVING or the deadline; the server starts NOT_SERVING. */
  private static String waitServing(ManagedChannel channel) throws InterruptedException {
    HealthGrpc.HealthBlockingStub health = HealthGrpc.newBlockingStub(channel).withWaitForReady();
    long deadline = System.nanoTime() + READY_TIMEOUT_NANOS;
    String last = "no answer";
    while (System.nanoTime() - deadline < 0) {
      try {
        HealthCheckResponse.ServingStatus status =
            health
                .withDeadlineAfter(CALL_TIMEOUT_SECONDS, TimeUnit.SECONDS)
                .check(HealthCheckRequest.newBuilder().setService(SERVICE).build())
                .getStatus();
        if (status == HealthCheckResponse.ServingStatus.SERVING) {
          return "SERVING";
        }
        last = status.name();
      } catch (StatusRuntimeException e) {
        last = e.getStatus().getCode().name();
      }
      Thread.sleep(100);
    }
    return last;
  }

  private static void run(ManagedChannel channel) throws CheckFailed, InterruptedException {
    String health = waitServing(channel);
    check("health", health.equals("SERVING"), SERVICE + " is " + health);
    SessionServiceStub client =
        SessionServiceStub.withDeadlineAfter(channel, CALL_TIMEOUT_SECONDS, TimeUnit.SECONDS);

    IssueResponse issued =
        client.issue(
            IssueRequest.newBuilder()
                .setUserId(USER)
                .setClient(
                    ClientInfo.newBuilder()
                        .setIp("127.0.0.1")
                        .setUserAgent("sessiond-example-java"))
                .build());
    String sessionId = issued.getSession().getSessionId();
    String token = issued.getTokens().getAccessToken();
    check(
        "issue", !sessionId.isEmpty() && !token.isEmpty(), "session " + sessionId + " for " + USER);

    ValidateResponse v =
        client.validate(ValidateRequest.newBuilder().setAccessToken(token).build());
    check(
        "validate",
        v.getValid() && v.getSession().getSessionId().equals(sessionId),
        "valid=" + v.getValid() + " user=" + v.getSession().getUserId());

    ListResponse listed = client.list(ListRequest.newBuilder().setAccessToken(token).build());
    List<Session> mine =
        listed.getSessionsList().stream()
            .filter(s -> s.getSessionId().equals(sessionId))
            .toList();
    boolean current = !mine.isEmpty() && mine.get(0).getCurrent();
    check(
        "list",
        mine.size() == 1 && current,
        listed.getSessionsCount() + " session(s), ours current=" + current);

    RevokeResponse r =
        client.revoke(
            RevokeRequest.newBuilder().setAccessToken(token).setSessionId(sessionId).build());
    check("revoke", r.getWasCurrent(), "was_current=" + r.getWasCurrent());

    v = client.validate(ValidateRequest.newBuilder().setAccessToken(token).build());
    check(
        "validate after revoke",
        !v.getValid() && v.getReason() == InvalidReason.INVALID_REASON_REVOKED,
        "valid=" + v.getValid() + " reason=" + v.getReason());

    StatusRuntimeException refusal = null;
    try {
      client.issue(IssueRequest.newBuilder().setUserId("").build());
    } catch (StatusRuntimeException e) {
      refusal = e;
    }
    if (refusal == null) {
      throw new CheckFailed("invalid argument: Issue with an empty user_id succeeded");
    }
    Status.Code code = refusal.getStatus().getCode();
    check("invalid argument", code == Status.Code.INVALID_ARGUMENT, "code=" + code);
    com.google.rpc.Status status = StatusProto.fromThrowable(refusal);
    List<ErrorInfo> infos = new ArrayList<>();
    for (Any detail : status == null ? List.<Any>of() : status.getDetailsList()) {
      if (detail.is(ErrorInfo.class)) {
        try {
          infos.add(detail.unpack(ErrorInfo.class));
        } catch (InvalidProtocolBufferException e) {
          throw new CheckFailed("error info: undecodable google.rpc.ErrorInfo: " + e.getMessage());
        }
      }
    }
    check(
        "error info",
        infos.size() == 1,
        infos.size() + " google.rpc.ErrorInfo in the status details");
    ErrorInfo info = infos.get(0);
    String field = info.getMetadataOrDefault("field", "");
    check(
        "error info fields",
        info.getReason().equals("INVALID_ARGUMENT")
            && info.getDomain().equals("sessiond")
            && field.equals("user_id"),
        "reason=" + info.getReason() + " domain=" + info.getDomain() + " field=" + field);
  }

  public static void main(String[] args) throws InterruptedException {
    String addr = Objects.requireNonNullElse(System.getenv("SESSIOND_ADDR"), "127.0.0.1:50051");
    ManagedChannel channel =
        Grpc.newChannelBuilder(addr, InsecureChannelCredentials.create()).build();
    int exit = 0;
    try {
      run(channel);
    } catch (CheckFailed e) {
      System.out.println("FAIL " + e.getMessage());
      exit = 1;
    } catch (StatusRuntimeException e) {
      System.out.println("FAIL unexpected rpc error: " + e.getStatus());
      exit = 1;
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    System.exit(exit);
  }
}
