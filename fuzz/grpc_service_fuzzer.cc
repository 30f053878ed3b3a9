// Fuzzes the control API: hostd.v1.HostService requests, mutated as protobufs, sent
// through a real in-process gRPC channel to the real service over a real Host.
//
// Input: byte 0 picks the method (modulo the service's method count); the rest is
// the serialized request of that method. The custom mutator parses the rest as
// that request type and changes one field through protobuf reflection (a string
// to an interesting value, a number to a boundary, an enum to any number, a
// repeated field grown or cleared, a submessage cleared), or, one time in four,
// leaves the bytes to libFuzzer's own mutations (which also reach what does not
// parse). The procs run in process (LocalProcManager): a fuzzed "program" is never
// executed.
//
// Checked on every call: the service answers (no crash, no hang past the call's
// deadline), never with UNKNOWN, INTERNAL or DATA_LOSS (an input error is the
// caller's, and must be named as such), and every error carries a message.
// Every 64 inputs every proc is killed, so the host's state stays small.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/host.h"
#include "daemon/host_service.h"
#include "fuzz/fuzz_check.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"
#include "grpcpp/grpcpp.h"
#include "hostd/v1/host.grpc.pb.h"
#include "manager/local_proc_manager.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

namespace v1 = ::hostd::v1;
using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

const google::protobuf::ServiceDescriptor& Service() {
  static const auto* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(v1::HostService::service_full_name());
  return *service;
}

std::unique_ptr<Message> NewRequest(int method) {
  const Descriptor* type = Service().method(method)->input_type();
  return std::unique_ptr<Message>(google::protobuf::MessageFactory::generated_factory()->GetPrototype(type)->New());
}

// The service, its host and an in-process channel, made once.
struct World {
  hostd::manager::LocalProcManager mgr;
  std::unique_ptr<hostd::daemon::Host> host = *hostd::daemon::Host::Start(mgr, mgr, {});
  std::string logs = std::filesystem::temp_directory_path() / "hostd-grpc-fuzz-logs";
  std::unique_ptr<hostd::daemon::HostService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::HostService::Stub> stub;
  int inputs = 0;

  World() {
    std::filesystem::create_directories(logs);
    hostd::daemon::HostServiceOptions opts;
    opts.workers = 4;
    opts.max_queued_calls = 64;
    opts.log_path = [this](const std::string& name, bool err, int rotation) {
      return absl::StrCat(logs, "/", name, err ? ".stderr" : ".stdout",
                          rotation > 0 ? absl::StrCat(".", rotation) : "");
    };
    service = std::make_unique<hostd::daemon::HostService>(*host, opts);
    grpc::ServerBuilder builder;
    builder.RegisterService(service.get());
    server = builder.BuildAndStart();
    stub = v1::HostService::NewStub(server->InProcessChannel(grpc::ChannelArguments()));
  }
};

World& TheWorld() {
  static World* world = new World();  // never destroyed: libFuzzer exits with it running
  return *world;
}

void CheckStatus(const grpc::Status& s) {
  FUZZ_CHECK(s.error_code() != grpc::StatusCode::UNKNOWN);
  FUZZ_CHECK(s.error_code() != grpc::StatusCode::INTERNAL);
  FUZZ_CHECK(s.error_code() != grpc::StatusCode::DATA_LOSS);
  FUZZ_CHECK(s.ok() || !s.error_message().empty());
}

template <typename Req, typename Resp, typename Call>
void Unary(const Message& msg, Call call) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(500)));
  Resp resp;
  CheckStatus((TheWorld().stub.get()->*call)(&ctx, static_cast<const Req&>(msg), &resp));
}

template <typename Req, typename Item, typename Call>
void Streaming(const Message& msg, Call call) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(200)));
  auto reader = (TheWorld().stub.get()->*call)(&ctx, static_cast<const Req&>(msg));
  Item item;
  for (int i = 0; i < 8 && reader->Read(&item); ++i) {
  }
  ctx.TryCancel();
  while (reader->Read(&item)) {
  }
  grpc::Status s = reader->Finish();
  if (s.error_code() != grpc::StatusCode::CANCELLED) CheckStatus(s);
}

void Call(const std::string& name, const Message& m) {
  using S = v1::HostService::Stub;
  if (name == "SpawnProc") return Unary<v1::SpawnProcRequest, v1::SpawnProcResponse>(m, &S::SpawnProc);
  if (name == "SpawnProcs") return Unary<v1::SpawnProcsRequest, v1::SpawnProcsResponse>(m, &S::SpawnProcs);
  if (name == "GetProc") return Unary<v1::GetProcRequest, v1::Proc>(m, &S::GetProc);
  if (name == "ListProcs") return Unary<v1::ListProcsRequest, v1::ListProcsResponse>(m, &S::ListProcs);
  if (name == "WaitProc") return Unary<v1::WaitProcRequest, v1::Proc>(m, &S::WaitProc);
  if (name == "TerminateProc") return Unary<v1::TerminateProcRequest, v1::Proc>(m, &S::TerminateProc);
  if (name == "KillProc") return Unary<v1::KillProcRequest, v1::Proc>(m, &S::KillProc);
  if (name == "TerminateAll") return Unary<v1::TerminateAllRequest, v1::TerminateAllResponse>(m, &S::TerminateAll);
  if (name == "SendMessage") return Unary<v1::SendMessageRequest, v1::SendMessageResponse>(m, &S::SendMessage);
  if (name == "GetHostInfo") return Unary<v1::GetHostInfoRequest, v1::HostInfo>(m, &S::GetHostInfo);
  if (name == "CreateGroup") return Unary<v1::CreateGroupRequest, v1::Group>(m, &S::CreateGroup);
  if (name == "DeleteGroup") return Unary<v1::DeleteGroupRequest, v1::DeleteGroupResponse>(m, &S::DeleteGroup);
  if (name == "RestartProc") return Unary<v1::RestartProcRequest, v1::Proc>(m, &S::RestartProc);
  if (name == "BroadcastSignal") {
    return Unary<v1::BroadcastSignalRequest, v1::BroadcastSignalResponse>(m, &S::BroadcastSignal);
  }
  if (name == "GetTree") return Unary<v1::GetTreeRequest, v1::Tree>(m, &S::GetTree);
  if (name == "WatchProcs") return Streaming<v1::WatchProcsRequest, v1::ProcEvent>(m, &S::WatchProcs);
  if (name == "StreamLogs") return Streaming<v1::StreamLogsRequest, v1::LogChunk>(m, &S::StreamLogs);
  if (name == "Drain") return Unary<v1::DrainRequest, v1::DrainResponse>(m, &S::Drain);
  if (name == "RenewLease") return Unary<v1::RenewLeaseRequest, v1::RenewLeaseResponse>(m, &S::RenewLease);
  // A method added to the service after this list: the input is not run (add it above).
}

// ---- the protobuf mutator ----

const std::string& InterestingString(std::mt19937& rng) {
  static const std::string values[] = {"",
                                       "p0",
                                       "p1",
                                       "g0",
                                       "echo",
                                       "/bin/true",
                                       "../../etc/passwd",
                                       "a/b",
                                       std::string("with\0nul", 8),
                                       "\xff\xfe",
                                       " ",
                                       "p0,echo",
                                       "unix:/tmp/x",
                                       "local:1",
                                       std::string(5000, 'a'),
                                       std::string(300, 'n')};
  static const std::string names[] = {"p0", "p1", "p2", "g0", "g1"};
  return rng() % 2 == 0 ? values[rng() % (sizeof(values) / sizeof(values[0]))] : names[rng() % 5];
}

int64_t InterestingInt(std::mt19937& rng) {
  static const int64_t values[] = {0, 1, -1, 2, 9, 15, 64, 1000, 1 << 20, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN};
  return rng() % 3 == 0 ? static_cast<int64_t>(rng()) : values[rng() % (sizeof(values) / sizeof(values[0]))];
}

void MutateField(Message& msg, const FieldDescriptor* f, std::mt19937& rng, int depth);

void MutateMessage(Message& msg, std::mt19937& rng, int depth) {
  const Descriptor* d = msg.GetDescriptor();
  if (d->field_count() == 0 || depth > 4) return;
  MutateField(msg, d->field(static_cast<int>(rng() % d->field_count())), rng, depth);
}

void MutateField(Message& msg, const FieldDescriptor* f, std::mt19937& rng, int depth) {
  const Reflection* r = msg.GetReflection();
  if (f->is_repeated()) {
    if (rng() % 4 == 0) {
      r->ClearField(&msg, f);
      return;
    }
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING: r->AddString(&msg, f, InterestingString(rng)); return;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        if (r->FieldSize(msg, f) > 0 && rng() % 2 == 0) {
          MutateMessage(*r->MutableRepeatedMessage(&msg, f, static_cast<int>(rng() % r->FieldSize(msg, f))), rng,
                        depth + 1);
        } else {
          MutateMessage(*r->AddMessage(&msg, f), rng, depth + 1);
        }
        return;
      default:
        r->ClearField(&msg, f);  // repeated scalars: hostd has none worth growing
        return;
    }
  }
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: r->SetString(&msg, f, InterestingString(rng)); return;
    case FieldDescriptor::CPPTYPE_INT32: r->SetInt32(&msg, f, static_cast<int32_t>(InterestingInt(rng))); return;
    case FieldDescriptor::CPPTYPE_INT64: r->SetInt64(&msg, f, InterestingInt(rng)); return;
    case FieldDescriptor::CPPTYPE_UINT32: r->SetUInt32(&msg, f, static_cast<uint32_t>(InterestingInt(rng))); return;
    case FieldDescriptor::CPPTYPE_UINT64: r->SetUInt64(&msg, f, static_cast<uint64_t>(InterestingInt(rng))); return;
    case FieldDescriptor::CPPTYPE_DOUBLE: r->SetDouble(&msg, f, static_cast<double>(InterestingInt(rng)) / 7); return;
    case FieldDescriptor::CPPTYPE_FLOAT: r->SetFloat(&msg, f, static_cast<float>(InterestingInt(rng)) / 7); return;
    case FieldDescriptor::CPPTYPE_BOOL: r->SetBool(&msg, f, !r->GetBool(msg, f)); return;
    case FieldDescriptor::CPPTYPE_ENUM: r->SetEnumValue(&msg, f, static_cast<int>(rng() % 8) - 1); return;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      if (r->HasField(msg, f) && rng() % 4 == 0) {
        r->ClearField(&msg, f);
      } else {
        MutateMessage(*r->MutableMessage(&msg, f), rng, depth + 1);
      }
      return;
  }
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  std::mt19937 rng(seed);
  if (size == 0 || rng() % 4 == 0) return LLVMFuzzerMutate(data, size, max_size);
  const int method = data[0] % Service().method_count();
  std::unique_ptr<Message> req = NewRequest(method);
  if (!req->ParseFromArray(data + 1, static_cast<int>(size - 1))) req->Clear();
  for (int n = 1 + static_cast<int>(rng() % 3); n > 0; --n) MutateMessage(*req, rng, 0);
  std::string out;
  if (!req->SerializeToString(&out) || out.size() + 1 > max_size) return LLVMFuzzerMutate(data, size, max_size);
  if (rng() % 8 == 0) data[0] = static_cast<uint8_t>(rng());  // now and then, another method
  std::memcpy(data + 1, out.data(), out.size());
  return out.size() + 1;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  World& world = TheWorld();
  const int method = data[0] % Service().method_count();
  std::unique_ptr<Message> req = NewRequest(method);
  if (!req->ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;  // gRPC would refuse it itself
  Call(Service().method(method)->name(), *req);
  if (++world.inputs % 64 == 0) world.mgr.KillAll(absl::Now() + absl::Seconds(10));
  return 0;
}
