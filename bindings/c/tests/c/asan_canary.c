/* A deliberate bug, for the AddressSanitizer run: reads a packet's data after
 * releasing it. run.sh expects AddressSanitizer to report it (exit 86); if
 * it did not, the sanitizer would not be watching libcuframes' memory and
 * the clean runs would prove nothing.
 *
 * usage: asan_canary RUNTIME_DIR */
#include <cuframes/cuframes.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    cuframes_publisher_options_t po;
    cuframes_publisher_options_init(&po);
    po.key = "canary";
    po.runtime_dir = argv[1];
    po.width = 16;
    po.height = 16;
    po.packets = 1;
    po.packet_codec_id = CUFRAMES_AV_CODEC_ID_H264;
    cuframes_publisher_t *pub = NULL;
    if (cuframes_publisher_create(&po, &pub) != CUFRAMES_OK) return 1;
    cuframes_subscriber_options_t so;
    cuframes_subscriber_options_init(&so);
    so.key = "canary";
    so.runtime_dir = argv[1];
    so.subscribe_flags = CUFRAMES_SUBSCRIBE_PACKETS;
    cuframes_subscriber_t *sub = NULL;
    if (cuframes_subscriber_create(&so, &sub) != CUFRAMES_OK) return 1;
    static const unsigned char au[64] = {0, 0, 0, 1, 0x65};
    cuframes_publisher_publish_packet(pub, au, sizeof au, 0, 0, CUFRAMES_PKT_FLAG_KEY);
    cuframes_packet_t *pkt = NULL;
    if (cuframes_subscriber_next_packet(sub, &pkt, 5000) != CUFRAMES_OK) return 1;
    const volatile unsigned char *data = cuframes_packet_data(pkt);
    cuframes_packet_release(pkt);
    printf("%d\n", data[4]); /* use after free */
    cuframes_subscriber_destroy(sub);
    cuframes_publisher_destroy(pub);
    return 0;
}
