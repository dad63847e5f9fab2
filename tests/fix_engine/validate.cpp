// Validate FIX messages with QuickFIX (Debian's libquickfix, the C++ engine), for
// tests/test_fix_engine.py.
//
// Usage: validate DICTIONARY.xml < messages
// stdin holds one message per line; each message keeps its SOH delimiters and the line ends
// with '\n'. For every line the program prints exactly one line: "OK <MsgType>" or
// "ERR <what QuickFIX says>". QuickFIX first parses the message against the data dictionary,
// which checks BodyLength, CheckSum and the repeating groups. It then validates it: tag
// numbers, required fields, fields allowed for the message type, value formats and enums,
// and group counts.
#include <iostream>
#include <string>

#include <quickfix/DataDictionary.h>
#include <quickfix/Exceptions.h>
#include <quickfix/Message.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: validate DICTIONARY.xml" << std::endl;
    return 2;
  }
  try {
    FIX::DataDictionary dictionary(argv[1]);
    dictionary.checkFieldsOutOfOrder(true);
    dictionary.checkFieldsHaveValues(true);
    dictionary.checkUserDefinedFields(true);
    dictionary.allowUnknownMsgFields(false);
    std::string line;
    while (std::getline(std::cin, line)) {
      try {
        FIX::Message message(line, dictionary, true);
        FIX::DataDictionary::validate(message, &dictionary, &dictionary);
        FIX::MsgType type;
        message.getHeader().getField(type);
        std::cout << "OK " << type.getValue() << std::endl;
      }
#define WITH_FIELD(T)                                                             \
  catch (const FIX::T& e) {                                                       \
    std::cout << "ERR " << e.what() << " (tag " << e.field << ")" << std::endl;   \
  }
      WITH_FIELD(InvalidTagNumber)
      WITH_FIELD(RequiredTagMissing)
      WITH_FIELD(TagNotDefinedForMessage)
      WITH_FIELD(NoTagValue)
      WITH_FIELD(IncorrectTagValue)
      WITH_FIELD(IncorrectDataFormat)
      WITH_FIELD(TagOutOfOrder)
      WITH_FIELD(RepeatedTag)
      WITH_FIELD(RepeatingGroupCountMismatch)
      catch (const FIX::Exception& e) {
        std::cout << "ERR " << e.what() << " (" << e.type << ")" << std::endl;
      } catch (const std::exception& e) {
        std::cout << "ERR " << e.what() << std::endl;
      }
    }
  } catch (const FIX::ConfigError& e) {
    std::cerr << "dictionary: " << e.what() << std::endl;
    return 3;
  }
  return 0;
}
