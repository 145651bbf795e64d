// Unit tests of the frame codec, base64 and the ExecRequest/ExecResult JSON mapping.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include "agent/protocol.hpp"

using namespace warmpool;
using namespace warmpool::proto;

TEST(Base64, EncodesRfc4648Vectors) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
}

TEST(Base64, DecodesRfc4648Vectors) {
  EXPECT_EQ(base64_decode("Zg=="), "f");
  EXPECT_EQ(base64_decode("Zm8="), "fo");
  EXPECT_EQ(base64_decode("Zm9vYmFy"), "foobar");
}

TEST(Base64, RoundTripsEveryByteValueAtEveryLength) {
  std::string all;
  for (int i = 0; i < 256; ++i)
    all += char(i);
  for (size_t len = 0; len <= all.size(); ++len) {
    std::string s = all.substr(all.size() - len);
    ASSERT_EQ(base64_decode(base64_encode(s)), s) << "length " << len;
  }
}

TEST(Base64, RejectsMalformedInput) {
  for (const char* bad : {"Zg=", "Z===", "Zm9v!A==", "Zg==Zg==", "Z=g=", "ab\ncd==", "===="})
    EXPECT_THROW(base64_decode(bad), std::invalid_argument) << bad;
}

TEST(Frame, EncodesBigEndianLengthPrefix) {
  std::string f = encode_frame_text("abc");
  ASSERT_EQ(f.size(), 7u);
  EXPECT_EQ(f.substr(0, 4), std::string("\0\0\0\3", 4));
  EXPECT_EQ(f.substr(4), "abc");
}

TEST(Frame, DecodeWaitsForACompleteFrameThenConsumesIt) {
  std::string wire = encode_frame(json{{"a", 1}}) + encode_frame(json{{"b", 2}});
  std::string buf, payload;
  for (size_t i = 0; i < 10; ++i) { // fewer bytes than the first frame
    buf = wire.substr(0, i);
    ASSERT_EQ(decode_frame(buf, payload), DecodeStatus::need_more);
    ASSERT_EQ(buf.size(), i);
  }
  buf = wire;
  ASSERT_EQ(decode_frame(buf, payload), DecodeStatus::ok);
  EXPECT_EQ(json::parse(payload), (json{{"a", 1}}));
  ASSERT_EQ(decode_frame(buf, payload), DecodeStatus::ok);
  EXPECT_EQ(json::parse(payload), (json{{"b", 2}}));
  EXPECT_TRUE(buf.empty());
}

TEST(Frame, DecodeRejectsOversizedLengthPrefix) {
  std::string buf("\xff\xff\xff\xff", 4);
  std::string payload;
  EXPECT_EQ(decode_frame(buf, payload), DecodeStatus::too_large);
  EXPECT_EQ(payload.capacity() < 1024, true); // nothing was allocated for the claimed size
}

TEST(Frame, EncodeRefusesPayloadOverTheMaximum) {
  EXPECT_THROW(encode_frame_text(std::string(kMaxFrame + 1, 'x')), std::length_error);
}

struct PipeFds {
  int r = -1, w = -1;
  PipeFds() {
    int p[2];
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    r = p[0];
    w = p[1];
  }
  ~PipeFds() {
    if (r >= 0)
      close(r);
    if (w >= 0)
      close(w);
  }
};

TEST(Frame, ReadFrameReturnsWhatWriteFrameWrote) {
  PipeFds p;
  json msg{{"op", "ping"}, {"id", 7}};
  ASSERT_TRUE(write_frame(p.w, msg));
  std::string payload;
  ASSERT_TRUE(read_frame(p.r, payload, kMaxFrame, clock::now() + std::chrono::seconds(5)));
  EXPECT_EQ(json::parse(payload), msg);
}

TEST(Frame, ReadFrameTimesOutOnASilentPipe) {
  PipeFds p;
  std::string payload;
  auto r = read_frame(p.r, payload, kMaxFrame, clock::now() + std::chrono::milliseconds(50));
  EXPECT_EQ(r.status, IoStatus::timeout);
}

TEST(Frame, ReadFrameDistinguishesCleanEofFromTruncation) {
  {
    PipeFds p;
    close(p.w);
    p.w = -1;
    std::string payload;
    EXPECT_EQ(read_frame(p.r, payload).status, IoStatus::eof);
  }
  {
    PipeFds p;
    std::string partial = encode_frame_text("hello").substr(0, 6);
    ASSERT_TRUE(write_all(p.w, partial));
    close(p.w);
    p.w = -1;
    std::string payload;
    EXPECT_EQ(read_frame(p.r, payload).status, IoStatus::truncated);
  }
}

TEST(Frame, ReadFrameRejectsOversizedPrefix) {
  PipeFds p;
  ASSERT_TRUE(write_all(p.w, std::string("\x7f\0\0\0", 4)));
  std::string payload;
  EXPECT_EQ(read_frame(p.r, payload, 1024).status, IoStatus::too_large);
}

TEST(Frame, WriteToClosedPipeFailsWithoutSigpipe) {
  PipeFds p;
  close(p.r);
  p.r = -1;
  auto r = write_frame(p.w, json{{"x", 1}}); // SIGPIPE would kill the test binary
  EXPECT_EQ(r.status, IoStatus::error);
  EXPECT_EQ(r.err, EPIPE);
}

TEST(Messages, ExecRequestRoundTrips) {
  ExecRequest req;
  req.argv = {"echo", "a b"};
  req.stdin_data = std::string("in\0put", 6);
  req.env = {{"A", "1"}};
  req.cwd = "sub";
  req.timeout = duration(1234);
  req.output_limit = 99;
  json j;
  exec_request_to_json(req, j);
  ExecRequest back = exec_request_from_json(json::parse(j.dump()));
  EXPECT_EQ(back.argv, req.argv);
  EXPECT_EQ(back.stdin_data, req.stdin_data);
  EXPECT_EQ(back.env, req.env);
  EXPECT_EQ(back.cwd, "sub");
  EXPECT_EQ(back.timeout, duration(1234));
  EXPECT_EQ(back.output_limit, 99u);
}

TEST(Messages, ExecResultRoundTrips) {
  ExecResult res;
  res.exit_code = -1;
  res.signal = 9;
  res.stdout_data = std::string("\0\xff", 2);
  res.stderr_data = "err";
  res.duration = std::chrono::microseconds(42);
  res.timed_out = true;
  res.truncated = true;
  json j;
  exec_result_to_json(res, j);
  ExecResult back = exec_result_from_json(json::parse(j.dump()));
  EXPECT_EQ(back.exit_code, -1);
  EXPECT_EQ(back.signal, 9);
  EXPECT_EQ(back.stdout_data, res.stdout_data);
  EXPECT_EQ(back.stderr_data, "err");
  EXPECT_EQ(back.duration.count(), 42);
  EXPECT_TRUE(back.timed_out);
  EXPECT_TRUE(back.truncated);
}

static std::string bad_request_message(const json& j) {
  try {
    exec_request_from_json(j);
  } catch (const BadRequest& e) {
    return e.what();
  }
  return "<accepted>";
}

TEST(Messages, WrongTypedFieldIsNamed) {
  EXPECT_NE(bad_request_message({{"argv", "ls"}}).find("'argv'"), std::string::npos);
  EXPECT_NE(bad_request_message({{"argv", {"ls", 1}}}).find("'argv'"), std::string::npos);
  EXPECT_NE(bad_request_message({{"shell", "ls"}, {"timeout_ms", "5"}}).find("'timeout_ms'"),
            std::string::npos);
  EXPECT_NE(bad_request_message({{"shell", "ls"}, {"timeout_ms", -5}}).find("'timeout_ms'"),
            std::string::npos);
  EXPECT_NE(bad_request_message({{"shell", "ls"}, {"env", {{"A", 1}}}}).find("'env'"),
            std::string::npos);
  EXPECT_NE(bad_request_message({{"shell", "ls"}, {"stdin", "***"}}).find("'stdin'"),
            std::string::npos);
}

TEST(Messages, ExecRequestNeedsExactlyOneOfArgvAndShell) {
  EXPECT_NE(bad_request_message(json::object()).find("argv"), std::string::npos);
  EXPECT_NE(bad_request_message({{"argv", {"ls"}}, {"shell", "ls"}}).find("argv"),
            std::string::npos);
  EXPECT_EQ(bad_request_message({{"shell", "ls"}}), "<accepted>");
}
