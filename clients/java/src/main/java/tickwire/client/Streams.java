package tickwire.client;

import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.function.Function;

/**
 * Bidirectional streams with flow control both ways, for any generated async rpc method.
 *
 * <pre>{@code
 * var rpc = MicrostructureServiceGrpc.newStub(channel).withDeadlineAfter(5, TimeUnit.MINUTES);
 * Iterator<StreamVpinResponse> answers = Streams.bidi(rpc::streamVpin, requests);
 * while (answers.hasNext()) { ... answers.next() ... }   // TickwireError if the call fails
 * }</pre>
 *
 * <p>A writer thread takes the requests from {@code requests} (it may block, e.g. on another
 * server stream) and sends each only while the call is ready (gRPC's isReady: HTTP/2 flow
 * control and a 32 KiB send buffer), so a slow server slows the writer and nothing piles up;
 * then it half-closes. Responses are asked for one at a time as the caller takes them
 * (manual inbound flow control), so a slow reader slows the server. Reading and writing run
 * concurrently. A request iterator that throws cancels the call with that cause.
 */
public final class Streams {
  private Streams() {}

  private static final Object END = new Object();

  /**
   * Starts {@code method} (an async rpc's bidi method, e.g. {@code rpc::streamVpin}), writes
   * {@code requests} from a daemon thread and returns the responses as a blocking iterator.
   */
  public static <Q, R> Iterator<R> bidi(
      Function<StreamObserver<R>, StreamObserver<Q>> method, Iterator<? extends Q> requests) {
    Call<Q, R> call = new Call<>();
    method.apply(call);
    Thread writer = new Thread(() -> call.write(requests), "tickwire-bidi-writer");
    writer.setDaemon(true);
    writer.start();
    return call;
  }

  /** One call: the response observer, the writer loop and the response iterator. */
  private static final class Call<Q, R> implements ClientResponseObserver<Q, R>, Iterator<R> {
    private final LinkedBlockingQueue<Object> inbox = new LinkedBlockingQueue<>();
    private final Object ready = new Object();
    private volatile boolean finished;
    private ClientCallStreamObserver<Q> out;
    private Object head;

    @Override
    public void beforeStart(ClientCallStreamObserver<Q> requestStream) {
      out = requestStream;
      out.disableAutoRequestWithInitial(1);
      out.setOnReadyHandler(
          () -> {
            synchronized (ready) {
              ready.notifyAll();
            }
          });
    }

    void write(Iterator<? extends Q> requests) {
      try {
        while (requests.hasNext()) {
          Q q = requests.next();
          synchronized (ready) {
            while (!out.isReady() && !finished) {
              ready.wait(100);
            }
          }
          if (finished) {
            return;
          }
          out.onNext(q);
        }
        out.onCompleted();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        out.cancel("request writer interrupted", e);
      } catch (RuntimeException e) {
        out.cancel("request iterator failed", e);
      }
    }

    @Override
    public void onNext(R value) {
      inbox.add(value);
    }

    @Override
    public void onError(Throwable t) {
      finished = true;
      inbox.add(t);
    }

    @Override
    public void onCompleted() {
      finished = true;
      inbox.add(END);
    }

    @Override
    public boolean hasNext() {
      if (head == null) {
        try {
          head = inbox.take();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          out.cancel("reader interrupted", e);
          throw TickwireError.from(e);
        }
      }
      if (head instanceof Throwable) {
        throw TickwireError.from((Throwable) head);
      }
      return head != END;
    }

    @Override
    @SuppressWarnings("unchecked")
    public R next() {
      if (!hasNext()) {
        throw new NoSuchElementException();
      }
      R r = (R) head;
      head = null;
      out.request(1);
      return r;
    }
  }
}
