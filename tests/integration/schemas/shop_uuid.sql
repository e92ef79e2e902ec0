-- Test shop, shape "uuid": db/schema/shop_base.sql plus rows the shop already had before the
-- KiotViet migration. None has a kiotviet_id; every one must survive the migration and the syncs
-- byte for byte (shop-only columns featured/seo_title included). SKUs start with "SHOP-" so they
-- never collide with KiotViet product codes from the simulator.
-- Needs psql (\ir). Idempotent: fixed ids, ON CONFLICT DO NOTHING.

\ir ../../../db/schema/shop_base.sql

INSERT INTO public.categories (id, name, slug, parent_id, description, created_at, updated_at) VALUES
    ('10000000-0000-4000-8000-000000000001', 'Nhẫn', 'nhan', NULL, 'Nhẫn vàng, nhẫn kim cương',
     '2023-01-05 09:00:00+07', '2023-01-05 09:00:00+07'),
    ('10000000-0000-4000-8000-000000000002', 'Nhẫn cưới', 'nhan-cuoi', '10000000-0000-4000-8000-000000000001',
     NULL, '2023-01-05 09:01:00+07', '2024-02-14 10:30:00+07'),
    ('10000000-0000-4000-8000-000000000003', 'Dây chuyền', 'day-chuyen', NULL, E'Dây chuyền\nvàng 18K',
     '2023-01-06 09:00:00+07', '2023-01-06 09:00:00+07'),
    ('10000000-0000-4000-8000-000000000004', 'Bông tai', NULL, NULL, '',
     '2023-01-07 09:00:00+07', '2023-03-01 08:00:00+07'),
    ('10000000-0000-4000-8000-000000000005', 'Quà tặng "đặc biệt"', 'qua-tang', NULL, NULL,
     '2023-06-01 12:00:00.123456+07', '2023-06-01 12:00:00.123456+07')
ON CONFLICT (id) DO NOTHING;

INSERT INTO public.products (id, name, sku, full_name, description, price, category_id, images,
                             is_active, stock_quantity, created_at, updated_at, featured, seo_title) VALUES
    ('20000000-0000-4000-8000-000000000001', 'Nhẫn kim cương 5.4mm', 'SHOP-0001', 'Nhẫn kim cương 5.4mm vàng trắng 18K',
     'Viên chủ 5.4mm, ổ 4 chấu', 25500000.00, '10000000-0000-4000-8000-000000000001',
     ARRAY['https://shop.example/img/nhan-1.jpg', 'https://shop.example/img/nhan-1b.jpg'],
     true, 3, '2023-02-01 10:00:00+07', '2024-05-01 10:00:00+07', true, 'Nhẫn kim cương đẹp'),
    ('20000000-0000-4000-8000-000000000002', 'Nhẫn cưới trơn', 'SHOP-0002', NULL, NULL, 7990000.50,
     '10000000-0000-4000-8000-000000000002', ARRAY['https://shop.example/img/cuoi.jpg'],
     true, 12.5, '2023-02-02 10:00:00+07', '2023-02-02 10:00:00+07', false, NULL),
    ('20000000-0000-4000-8000-000000000003', 'Dây chuyền Ý', 'SHOP-0003', 'Dây chuyền Ý 18K 45cm', E'Dài 45cm\r\nKhoá bấm',
     12000000.00, '10000000-0000-4000-8000-000000000003', '{}', true, 0,
     '2023-02-03 10:00:00+07', '2023-02-03 10:00:00+07', false, 'Dây chuyền'),
    ('20000000-0000-4000-8000-000000000004', 'Bông tai ngọc trai', 'SHOP-0004', NULL, 'Ngọc trai nước ngọt 🦪',
     3450000.00, '10000000-0000-4000-8000-000000000004', NULL, false, NULL,
     '2023-02-04 10:00:00+07', '2023-09-09 09:09:09.999999+07', false, NULL),
    ('20000000-0000-4000-8000-000000000005', 'Hộp quà', NULL, NULL, NULL, NULL, '10000000-0000-4000-8000-000000000005',
     NULL, true, NULL, '2023-02-05 10:00:00+07', '2023-02-05 10:00:00+07', false, NULL),
    ('20000000-0000-4000-8000-000000000006', 'Phiếu quà tặng 1 triệu', 'SHOP-GIFT-1M', NULL, 'Không hoàn tiền',
     1000000.00, NULL, ARRAY[]::text[], true, 100, '2023-02-06 10:00:00+07', '2023-02-06 10:00:00+07', true, NULL),
    ('20000000-0000-4000-8000-000000000007', 'Nhẫn nam "Rồng"', 'SHOP-0007', 'Nhẫn nam ''Rồng'' vàng 24K', NULL,
     45000000.00, '10000000-0000-4000-8000-000000000001', ARRAY['https://shop.example/img/rong.jpg'],
     true, 1, '2023-02-07 10:00:00+07', '2023-02-07 10:00:00+07', false, 'Nhẫn nam rồng'),
    ('20000000-0000-4000-8000-000000000008', 'Lắc tay', 'SHOP-0008', NULL, NULL, 0.01,
     NULL, ARRAY['a', NULL, 'c'], true, -2, '2023-02-08 10:00:00+07', '2023-02-08 10:00:00+07', false, ''),
    ('20000000-0000-4000-8000-000000000009', 'Mặt dây chuyền', 'SHOP-0009', NULL, NULL, 9999999999999999.99,
     '10000000-0000-4000-8000-000000000003', NULL, true, 0.001, '2023-02-09 10:00:00+07', '2023-02-09 10:00:00+07',
     false, NULL),
    ('20000000-0000-4000-8000-000000000010', 'Sản phẩm ngừng bán', 'SHOP-0010', NULL, NULL, 500000.00,
     NULL, NULL, false, 0, '2022-12-31 23:59:59+07', '2022-12-31 23:59:59+07', false, NULL)
ON CONFLICT (id) DO NOTHING;
