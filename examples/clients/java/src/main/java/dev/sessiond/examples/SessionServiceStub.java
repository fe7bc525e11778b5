package dev.sessiond.examples;

import com.google.protobuf.Descriptors.MethodDescriptor;
import com.google.protobuf.Descriptors.ServiceDescriptor;
import com.google.protobuf.Message;
import dev.sessiond.v1.IssueRequest;
import dev.sessiond.v1.IssueResponse;
import dev.sessiond.v1.ListRequest;
import dev.sessiond.v1.ListResponse;
import dev.sessiond.v1.RevokeRequest;
import dev.sessiond.v1.RevokeResponse;
import dev.sessiond.v1.SessionOuterClass;
import dev.sessiond.v1.ValidateRequest;
import dev.sessiond.v1.ValidateResponse;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.protobuf.ProtoUtils;
import io.grpc.stub.ClientCalls;
import java.util.concurrent.TimeUnit;

/**
 * A blocking client for the RPCs of {@code sessiond.v1.SessionService} that the example uses,
 * doing what protoc-gen-grpc-java's {@code SessionServiceGrpc.newBlockingStub} would.
 *
 * <p>Each RPC is bound to the method of the same name in the service descriptor that protoc
 * generated from proto/, and its request and response classes are checked against that
 * method's input and output types when the stub is built, so a name or type that disagrees with
 * the proto fails at once rather than on the wire.
 */
final class SessionServiceStub {
  private static final ServiceDescriptor SERVICE =
      SessionOuterClass.getDescriptor().findServiceByName("SessionService");

  private static final io.grpc.MethodDescriptor<IssueRequest, IssueResponse> ISSUE =
      unary("Issue", IssueRequest.getDefaultInstance(), IssueResponse.getDefaultInstance());
  private static final io.grpc.MethodDescriptor<ValidateRequest, ValidateResponse> VALIDATE =
      unary(
          "Validate", ValidateRequest.getDefaultInstance(), ValidateResponse.getDefaultInstance());
  private static final io.grpc.MethodDescriptor<ListRequest, ListResponse> LIST =
      unary("List", ListRequest.getDefaultInstance(), ListResponse.getDefaultInstance());
  private static final io.grpc.MethodDescriptor<RevokeRequest, RevokeResponse> REVOKE =
      unary("Revoke", RevokeRequest.getDefaultInstance(), RevokeResponse.getDefaultInstance());

  private final Channel channel;
  private final CallOptions options;

  private SessionServiceStub(Channel channel, CallOptions options) {
    this.channel = channel;
    this.options = options;
  }

  /** A stub whose calls share one deadline, {@code timeout} from now. */
  static SessionServiceStub withDeadlineAfter(Channel channel, long timeout, TimeUnit unit) {
    return new SessionServiceStub(channel, CallOptions.DEFAULT.withDeadlineAfter(timeout, unit));
  }

  IssueResponse issue(IssueRequest request) {
    return ClientCalls.blockingUnaryCall(channel, ISSUE, options, request);
  }

  ValidateResponse validate(ValidateRequest request) {
    return ClientCalls.blockingUnaryCall(channel, VALIDATE, options, request);
  }

  ListResponse list(ListRequest request) {
    return ClientCalls.blockingUnaryCall(channel, LIST, options, request);
  }

  RevokeResponse revoke(RevokeRequest request) {
    return ClientCalls.blockingUnaryCall(channel, REVOKE, options, request);
  }

  private static <Q extends Message, R extends Message> io.grpc.MethodDescriptor<Q, R> unary(
      String name, Q request, R response) {
    MethodDescriptor method = SERVICE.findMethodByName(name);
    if (method == null
        || method.isClientStreaming()
        || method.isServerStreaming()
        || !method.getInputType().equals(request.getDescriptorForType())
        || !method.getOutputType().equals(response.getDescriptorForType())) {
      throw new IllegalStateException(
          "no unary " + SERVICE.getFullName() + "." + name + " with these message types");
    }
    return io.grpc.MethodDescriptor.<Q, R>newBuilder()
        .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
        .setFullMethodName(
            io.grpc.MethodDescriptor.generateFullMethodName(SERVICE.getFullName(), name))
        .setRequestMarshaller(ProtoUtils.marshaller(request))
        .setResponseMarshaller(ProtoUtils.marshaller(response))
        .build();
  }
}
